"""ProcessBench: ``id, generator, problem, steps, final_answer_correct, label``.

``label`` is the 0-based index of the first wrong step, or -1 when every step is right. Reading:
the steps before it are right, it is wrong, and the steps after it are unlabelled (None) by
default, since ProcessBench says nothing about them; ``after_error="wrong"`` marks them wrong.
``id``, ``generator`` and ``final_answer_correct`` go to ``meta`` under their own names, and so
does any other field. Writing needs the first wrong step: every step before it must be labelled
right (see ``formats.labels.first_wrong``). ``final_answer_correct`` is taken from ``meta``; when
absent it is true for a solution with no wrong step and null otherwise (unknown, never guessed).
"""

from __future__ import annotations

from typing import Any

from data_tools.formats.fields import (
    extra_fields,
    extras,
    field_error,
    need_int,
    need_object,
    need_str,
    need_str_list,
    optional_bool,
)
from data_tools.formats.labels import first_wrong
from data_tools.schema import Label, StepwiseExample

FIELDS = ("id", "generator", "problem", "steps", "final_answer_correct", "label")
AFTER_ERROR = ("unlabelled", "wrong")


def from_row(row: Any, after_error: str = "unlabelled") -> StepwiseExample:
    row = need_object(row)
    problem = need_str(row, "problem")
    steps = need_str_list(row, "steps")
    first = need_int(row, "label", minimum=-1)
    if first >= len(steps):
        raise field_error("label", f"-1 or a step index below {len(steps)} (the number of steps)", first)
    final_ok = optional_bool(row, "final_answer_correct")
    if first < 0:
        labels: list[Label] = [True] * len(steps)
    else:
        after: Label = False if after_error == "wrong" else None
        labels = [True] * first + [False] + [after] * (len(steps) - first - 1)
    meta = {"id": row.get("id"), "generator": row.get("generator"), "final_answer_correct": final_ok}
    meta.update(extras(row, FIELDS))
    return StepwiseExample(problem, steps, labels, meta)


def to_row(example: StepwiseExample, soft_threshold: float | None = None) -> dict[str, Any]:
    first = first_wrong(example.labels, soft_threshold)
    meta = example.meta
    final_ok = meta["final_answer_correct"] if "final_answer_correct" in meta else (True if first < 0 else None)
    row: dict[str, Any] = {"id": meta.get("id"), "generator": meta.get("generator"), "problem": example.prompt,
                           "steps": list(example.steps), "final_answer_correct": final_ok, "label": first}
    row.update(extra_fields(meta, owned=("id", "generator", "final_answer_correct"), reserved=FIELDS))
    return row
