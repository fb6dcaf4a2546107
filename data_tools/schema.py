"""The one data contract of the project: a stepwise example, and JSONL in and out.

A stepwise example is ``prompt`` (the problem), ``steps`` (list of step strings), ``labels`` (one per
step: bool, or a float in [0, 1] for soft Monte-Carlo labels, or None when unlabelled) and free
``meta``. On disk it uses TRL's stepwise-supervision column names (``prompt``, ``completions``,
``labels``) so files move between tools without glue; reading also accepts ``steps``.

The one first-error rule lives here too (``first_error``, ``StepwiseExample.hard_labels``): a label is
right when it is true or a number above 0, so a soft Monte-Carlo label counts as right when any
rollout succeeded (Math-Shepherd's hard estimate, the rule the labellers write into
``meta.hard_labels``). Evaluation, training and labelling all read hard labels through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_tools import jsonl

Label = bool | float | None


class DataError(ValueError):
    """Bad user input: says where (file, line, field), what was found, and how to fix it."""


def is_right(label: Label) -> bool | None:
    """A step label as a hard one: True when it is true or a number > 0, False otherwise, None when unlabelled."""
    if label is None:
        return None
    return label is True or (not isinstance(label, bool) and float(label) > 0)


def first_error(labels: Sequence[Label]) -> int | None:
    """Index of the first wrong step, -1 when every step is right, None when it cannot be told (an
    unlabelled step comes before any wrong one). Right and wrong as ``is_right`` says: 0.3 is right."""
    for i, lab in enumerate(labels):
        right = is_right(lab)
        if right is None:
            return None
        if not right:
            return i
    return -1


@dataclass
class StepwiseExample:
    prompt: str
    steps: list[str]
    labels: list[Label] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Where the example was read from ("data.jsonl, line 17"), so that a writer that cannot
    # represent it can say which input row it was. Not data: never written, never compared.
    origin: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise DataError(f"'prompt' must be a string, got {type(self.prompt).__name__}")
        if not isinstance(self.steps, list) or not all(isinstance(s, str) for s in self.steps):
            raise DataError("'completions' (the steps) must be a list of strings")
        if not self.steps:
            raise DataError("an example needs at least one step; got an empty 'completions' list")
        if self.labels is not None:
            if len(self.labels) != len(self.steps):
                raise DataError(
                    f"'labels' has {len(self.labels)} entries but there are {len(self.steps)} steps; "
                    "give one label per step (null for an unlabelled step)"
                )
            for i, lab in enumerate(self.labels):
                if lab is None or isinstance(lab, bool):
                    continue
                if not isinstance(lab, (int, float)) or not 0.0 <= float(lab) <= 1.0:
                    raise DataError(f"label {i} is {lab!r}; labels are true/false or a float in [0, 1]")

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completions": self.steps, "labels": self.labels, "meta": self.meta}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> StepwiseExample:
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object per line, got {type(row).__name__}")
        if "prompt" not in row:
            raise DataError("missing field 'prompt'")
        steps = row.get("completions", row.get("steps"))
        if steps is None:
            raise DataError("missing field 'completions' (or 'steps')")
        return cls(prompt=row["prompt"], steps=steps, labels=row.get("labels"), meta=row.get("meta") or {})

    def hard_labels(self) -> list[bool | None]:
        """Hard step labels: ``meta["hard_labels"]`` when present (a labeller's own), else ``is_right`` of
        each label; None kept for unlabelled steps."""
        given = self.meta.get("hard_labels")
        labels = given if given is not None else (self.labels or [None] * len(self.steps))
        return [is_right(lab) for lab in labels]

    def first_error(self) -> int | None:
        """``first_error`` of ``hard_labels()``."""
        return first_error(self.hard_labels())

    def float_labels(self) -> list[float | None]:
        """Labels as floats (True -> 1.0), None kept for unlabelled steps."""
        if self.labels is None:
            return [None] * len(self.steps)
        return [None if lab is None else float(lab) for lab in self.labels]


def read_jsonl(path: str | Path) -> Iterator[StepwiseExample]:
    """Stream examples from a JSONL file; an error names the file, the line and the problem."""
    try:
        for lineno, row in jsonl.read_rows(path):
            try:
                example = StepwiseExample.from_json(row)
            except DataError as exc:
                raise DataError(f"{path}, line {lineno}: {exc}") from None
            yield example
    except jsonl.JSONLineError as exc:  # not JSON: the message already names the file and line
        raise DataError(str(exc)) from None


def write_jsonl(path: str | Path, examples: Iterable[StepwiseExample]) -> int:
    """Write examples (creating parent folders); returns how many were written."""
    return jsonl.write_rows(path, (ex.to_json() for ex in examples))
