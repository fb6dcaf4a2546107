"""GSM8K: ``question`` and ``answer``, one step per line, ``<<expr=result>>`` calculator annotations,
and a last line ``#### N`` with the final answer.

Reading splits ``answer`` into lines (blank lines skipped; their exact layout is kept in
``meta["gsm8k_layout"]`` when it is not one line per step) and keeps each line as it is, the
``#### N`` line included as the last step; ``strip_calculations`` removes the annotations (which
cannot then be written back). ``N`` goes to ``meta["answer"]``, the gold answer the labeller checks
rollouts against. The answers are reference solutions, so every step is labelled right unless the
row carries a ``labels`` field (which this writer adds for labels that are not all right). Writing
joins the steps into ``answer`` and appends ``#### N`` (the last step's own answer) when the last
step is not such a line.
"""

from __future__ import annotations

import re
from typing import Any

from data_tools.answers import extract_answer
from data_tools.formats.fields import extra_fields, extras, field_error, need_object, need_str
from data_tools.formats.trl import bool_labels
from data_tools.schema import DataError, StepwiseExample
from data_tools.splitting import canonical_layout, join_steps, split_layout

FIELDS = ("question", "answer", "labels")
LAYOUT_KEY = "gsm8k_layout"
CALCULATION = re.compile(r"<<([^<>]*)>>")
FINAL = re.compile(r"^####[ \t]*(.*?)\s*$")


def gold_answer(answer: str) -> str | None:
    """The text after the last ``####`` marker of a GSM8K answer, or None."""
    _, sep, rest = answer.rpartition("####")
    return rest.strip() or None if sep else None


def from_row(row: Any, strip_calculations: bool = False) -> StepwiseExample:
    row = need_object(row)
    question = need_str(row, "question")
    answer = need_str(row, "answer")
    steps, layout = split_layout(answer, "lines")
    final = FINAL.match(steps[-1]) if steps else None
    if not final or not final.group(1):
        raise field_error("answer", "solution lines ending with a '#### N' line", answer)
    if strip_calculations:
        steps = [CALCULATION.sub("", s) for s in steps]
    labels = bool_labels(row, "labels", len(steps)) if "labels" in row else [True] * len(steps)
    meta = extras(row, FIELDS)
    meta["answer"] = final.group(1)
    if not canonical_layout(layout):
        meta[LAYOUT_KEY] = layout
    return StepwiseExample(question, steps, list(labels), meta)


def to_row(example: StepwiseExample) -> dict[str, Any]:
    steps = list(example.steps)
    if not FINAL.match(steps[-1]):
        final = extract_answer(steps[-1])
        if final is None:
            raise DataError("the last step states no final answer, and a GSM8K answer ends with '#### N'")
        steps.append(f"#### {final}")
    layout = example.meta.get(LAYOUT_KEY)
    if not isinstance(layout, list) or len(layout) != len(steps) + 1:
        layout = None
    row: dict[str, Any] = {"question": example.prompt, "answer": join_steps(steps, "\n", layout)}
    labels = example.labels
    if labels is not None and not all(lab is True or lab is None for lab in labels):
        if any(not isinstance(lab, bool) for lab in labels):
            raise DataError("GSM8K rows hold true/false labels only; write soft or partial labels --to stepwise")
        row["labels"] = list(labels) + [False] * (len(steps) - len(labels))
    row.update(extra_fields(example.meta, owned=("answer", LAYOUT_KEY), reserved=FIELDS))
    return row
