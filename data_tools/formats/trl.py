"""TRL stepwise supervision: ``prompt``, ``completions`` (the steps), ``labels`` (one bool per step).

The rows TRL's stepwise-supervision datasets use (e.g. trl-lib/math_shepherd), in JSON lines,
Parquet or a ``save_to_disk`` folder. Extra columns are kept: they go to ``meta`` on reading, and
every ``meta`` key is written back as a column. Labels must be true/false (0 and 1 are read as
such); soft and missing labels are written by the rules of ``formats.labels``, which may move an
unlabelled tail of steps into an ``unlabelled_completions`` column that reading re-attaches.
"""

from __future__ import annotations

from typing import Any

from data_tools.formats.fields import (
    extra_fields,
    extras,
    field_error,
    need,
    need_object,
    need_str,
    need_str_list,
)
from data_tools.formats.labels import TAIL_FIELD, hard_labels
from data_tools.schema import StepwiseExample

FIELDS = ("prompt", "completions", "labels")


def bool_labels(row: dict[str, Any], name: str, n_steps: int) -> list[bool]:
    """A list of true/false labels, one per step (0/1 read as false/true)."""
    value = need(row, name)
    if not isinstance(value, list) or not all(v in (0, 1) and not isinstance(v, float) for v in value):
        raise field_error(name, "a list of true/false", value)
    if len(value) != n_steps:
        raise field_error(name, f"{n_steps} labels, one per step", value)
    return [bool(v) for v in value]


def tail(row: dict[str, Any]) -> list[str]:
    """The unlabelled steps a writer moved out of the labelled ones (absent or null: none)."""
    if row.get(TAIL_FIELD) is None:
        return []
    return need_str_list(row, TAIL_FIELD, allow_empty=True)


def from_row(row: Any) -> StepwiseExample:
    row = need_object(row)
    prompt = need_str(row, "prompt")
    steps = need_str_list(row, "completions")
    labels: list[bool | None] = list(bool_labels(row, "labels", len(steps)))
    rest = tail(row)
    return StepwiseExample(prompt, steps + rest, labels + [None] * len(rest),
                           extras(row, FIELDS + (TAIL_FIELD,)))


def to_row(example: StepwiseExample, soft_threshold: float | None = None,
           unlabelled: str = "truncate") -> dict[str, Any]:
    steps, labels, rest = hard_labels(example.steps, example.labels, soft_threshold, unlabelled)
    row: dict[str, Any] = {"prompt": example.prompt, "completions": steps, "labels": labels}
    if rest:
        row[TAIL_FIELD] = rest
    row.update(extra_fields(example.meta, owned=(), reserved=FIELDS + (TAIL_FIELD,)))
    return row
