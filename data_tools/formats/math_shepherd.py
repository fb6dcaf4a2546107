"""Math-Shepherd: ``input`` (question, then steps each closed by a step tag) and ``label``.

``input`` reads "<question> Step 1: ... ки\\nStep 2: ... ки" and ``label`` is the same text with each
tag replaced by ``+`` (right) or ``-`` (wrong); ``task`` names the source (GSM8K, MATH). The
question ends where the last "Step 1:" header before the first tag begins, so a row without one is
an error (a few rows of the public dataset have a tag inside the question; ``--skip-invalid``
counts and skips them). Steps keep their "Step k:" headers, as TRL's conversion does; the writer
adds "Step k: " to a step that has none. Whitespace around tags that differs from the usual
" ки\\n" is kept in ``meta["math_shepherd_layout"]`` so the row is written back byte for byte.
A row without ``label`` is unlabelled; an example with no labelled step is written without one.
"""

from __future__ import annotations

import re
from typing import Any

from data_tools.formats.fields import extra_fields, extras, field_error, need_object, need_str
from data_tools.formats.labels import TAIL_FIELD, hard_labels
from data_tools.formats.trl import tail
from data_tools.schema import DataError, Label, StepwiseExample

STEP_TAG = "ки"
FIELDS = ("input", "label", "task")
LAYOUT_KEY = "math_shepherd_layout"
_FIRST_HEADER = re.compile(r"step\s*1\s*[:.]", re.IGNORECASE)
_ANY_HEADER = re.compile(r"step\s*\d+\s*[:.]", re.IGNORECASE)


def _canonical(n_steps: int) -> list[str]:
    """Whitespace around the steps: before step 1, then (before tag, after tag) for each step."""
    return [" "] + [" ", "\n"] * (n_steps - 1) + [" ", ""]


def _trim(text: str) -> tuple[str, str, str]:
    core = text.strip()
    start = len(text) - len(text.lstrip())
    return text[:start], core, text[start + len(core):]


def from_row(row: Any, step_tag: str = STEP_TAG) -> StepwiseExample:
    row = need_object(row)
    text = need_str(row, "input")
    pieces = text.split(step_tag)
    if len(pieces) < 2:
        raise field_error("input", f"steps closed by the step tag {step_tag!r}", text)
    if pieces[-1].strip():
        raise field_error("input", f"nothing but whitespace after the last {step_tag!r}", pieces[-1])
    headers = list(_FIRST_HEADER.finditer(pieces[0]))
    if not headers:
        raise field_error("input", f"a 'Step 1:' header before the first {step_tag!r} (where the question ends)",
                          pieces[0])
    cut = headers[-1].start()
    prompt = pieces[0][:cut].rstrip()
    layout = [pieces[0][len(prompt):cut]]
    steps = []
    for i, piece in enumerate(pieces[:-1]):
        before, step, after = _trim(piece[cut:] if i == 0 else piece)
        if i > 0:
            layout.append(before)
        if not step:
            raise field_error("input", f"a non-empty step before tag {i + 1}", piece)
        steps.append(step)
        layout.append(after)
    layout.append(pieces[-1])
    labels = _labels(row, pieces) if row.get("label") is not None else [None] * len(steps)
    rest = tail(row)
    meta = extras(row, ("input", "label", TAIL_FIELD))
    if layout != _canonical(len(steps)):
        meta[LAYOUT_KEY] = layout
    return StepwiseExample(prompt, steps + rest, labels + [None] * len(rest), meta)


def _labels(row: dict[str, Any], pieces: list[str]) -> list[Label]:
    label = need_str(row, "label")
    marks, pos = [], 0
    for piece in pieces[:-1]:
        pos += len(piece)
        marks.append(label[pos:pos + 1])
        pos += 1
    if any(m not in ("+", "-") for m in marks) or "".join(
            p + m for p, m in zip(pieces, marks + [""], strict=True)) != label:
        raise field_error("label", "the input with each step tag replaced by '+' or '-'", label)
    return [m == "+" for m in marks]


def to_row(example: StepwiseExample, step_tag: str = STEP_TAG, soft_threshold: float | None = None,
           unlabelled: str = "truncate") -> dict[str, Any]:
    if example.labels is None or all(lab is None for lab in example.labels):
        steps, labels, rest = list(example.steps), None, []
    else:
        steps, labels, rest = hard_labels(example.steps, example.labels, soft_threshold, unlabelled)
    for where, text in [("the prompt", example.prompt)] + [(f"step {i}", s) for i, s in enumerate(steps)]:
        if step_tag in text:
            raise DataError(f"{where} contains the step tag {step_tag!r}; pass another --step-tag")
    steps = [s if _ANY_HEADER.match(s) else f"Step {k}: {s}" for k, s in enumerate(steps, 1)]
    layout = example.meta.get(LAYOUT_KEY)
    if not isinstance(layout, list) or len(layout) != 2 * len(steps) + 1:
        layout = _canonical(len(steps))
    parts = [example.prompt, layout[0]]
    label_parts = list(parts)
    for i, step in enumerate(steps):
        parts += [step, layout[2 * i + 1], step_tag, layout[2 * i + 2]]
        if labels is not None:
            label_parts += [step, layout[2 * i + 1], "+" if labels[i] else "-", layout[2 * i + 2]]
    row: dict[str, Any] = {"input": "".join(parts)}
    if labels is not None:
        row["label"] = "".join(label_parts)
    if rest:
        row[TAIL_FIELD] = rest
    row.update(extra_fields(example.meta, owned=(LAYOUT_KEY,), reserved=FIELDS[:2] + (TAIL_FIELD,)))
    return row
