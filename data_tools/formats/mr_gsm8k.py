"""MR-GSM8K (Zeng et al.): model-written GSM8K solutions with a human-labelled first wrong step. Read only.

Each row: ``uuid``, ``question``, ``question_type`` (``original``, ``reversed`` or ``POT``),
``ground_truth_solution`` and ``ground_truth_answer`` (the reference), ``model_output_steps`` (one
string a step, written ``Step k: ...``), ``model_output_solution_correctness`` (``wrong`` or
``correct``), ``model_output_answer_correctness``, ``model_output_solution_first_error_step``
(**1-based**) and ``model_output_solution_first_error_reason``.

Reading: ``prompt`` is the question; ``steps`` are the model's steps with their ``Step k:`` prefix
removed (numbering is presentation, not content; a step written without it is kept as it is); a
wrong solution is labelled right before its first error, wrong at it and unlabelled (None) after
it, as ProcessBench does (the annotators judged no step after the first error); a solution judged
correct is right throughout. ``meta``: ``id`` (the uuid), ``answer`` (the reference answer, which
the labellers and answer checks read), ``question_type``, ``first_error`` (0-based, -1 for none),
``first_error_reason``, ``final_answer_correct`` (whether the final answer happens to be right),
``reference_solution``, and any field this reader does not know, unchanged.

``answer`` is the value after the reference solution's ``####`` line when it has one, else
``ground_truth_answer``. In the published ``reversed`` rows that field sometimes holds the
solution's first line ("Let's think step by step.") instead of the answer; then the answer stated by
the solution's last line is taken, and the field's own value is kept as ``meta.ground_truth_answer``.

``POT`` rows hold a Python program, not reasoning steps: they are refused (``--skip-invalid``
skips and counts them). Calculator annotations ``<<expr=result>>`` are kept as written.

There is no writer: the rows are human annotators' judgements (first wrong step and their reason), and
a file written from other labels would present them as theirs; convert to stepwise to keep
everything that was read.
"""

from __future__ import annotations

import re
from typing import Any

from data_tools.answers import extract_answer, to_number
from data_tools.formats.fields import extras, field_error, need, need_object, need_str, need_str_list
from data_tools.schema import DataError, Label, StepwiseExample

FIELDS = ("uuid", "question", "question_type", "ground_truth_solution", "ground_truth_answer", "model_output_steps",
          "model_output_answer_correctness", "model_output_solution_correctness",
          "model_output_solution_first_error_step", "model_output_solution_first_error_reason")
VERDICTS = ("correct", "wrong")
STEP_PREFIX = re.compile(r"^\s*step\s*\d+\s*:\s*", re.IGNORECASE)
_FINAL = re.compile(r"^####[ \t]*(.*?)\s*$", re.MULTILINE)
_NO_ERROR = (None, "", "N/A", "n/a", -1)


def strip_prefix(step: str) -> str:
    """A step without its ``Step k:`` numbering (any k, any case; a step without it comes back as it is)."""
    return STEP_PREFIX.sub("", step, count=1)


def reference_answer(solution: str, given: Any) -> str | None:
    """The reference answer: the solution's ``#### N`` value, else ``given`` when it is a number or a
    short answer, else the answer stated by the solution's last line (None when nothing states one)."""
    finals = [m.group(1) for m in _FINAL.finditer(solution) if m.group(1)]
    if finals:
        return finals[-1]
    if isinstance(given, (int, float)) and not isinstance(given, bool):
        return str(given)
    if isinstance(given, str) and given.strip() and to_number(given) is not None:
        return given.strip()
    lines = [line for line in solution.splitlines() if line.strip()]
    found = extract_answer(lines[-1]) if lines else None
    if found is not None:
        return found
    return given.strip() if isinstance(given, str) and given.strip() else None


def _verdict(row: dict[str, Any], name: str) -> str:
    value = need(row, name)
    if value not in VERDICTS:
        raise field_error(name, "'correct' or 'wrong'", value)
    return value


def from_row(row: Any) -> StepwiseExample:
    row = need_object(row)
    uuid = need_str(row, "uuid")
    question = need_str(row, "question")
    kind = need_str(row, "question_type")
    if kind == "POT":
        raise DataError("field 'question_type': 'POT' rows hold a Python program, not reasoning steps, so there "
                        "are no steps to read or label; leave POT rows out")
    raw_steps = need_str_list(row, "model_output_steps")
    steps = []
    for i, raw in enumerate(raw_steps):
        step = strip_prefix(raw)
        if not step.strip():
            raise field_error(f"model_output_steps[{i}]", "a step with text after its 'Step k:' prefix", raw)
        steps.append(step)
    reference = need_str(row, "ground_truth_solution")
    given = need(row, "ground_truth_answer")
    answer_ok = _verdict(row, "model_output_answer_correctness")
    name = "model_output_solution_first_error_step"
    if _verdict(row, "model_output_solution_correctness") == "correct":
        if row.get(name) not in _NO_ERROR:
            raise field_error(name, "null for a solution judged correct", row.get(name))
        first = -1
        labels: list[Label] = [True] * len(steps)
    else:
        step_no = need(row, name)
        # bool is an int in Python; true/false is not a step number.
        if not isinstance(step_no, int) or isinstance(step_no, bool) or not 1 <= step_no <= len(steps):
            raise field_error(name, f"a 1-based step number from 1 to {len(steps)} (the number of steps)", step_no)
        first = step_no - 1
        labels = [True] * first + [False] + [None] * (len(steps) - first - 1)
    reason = row.get("model_output_solution_first_error_reason")
    if reason is not None and not isinstance(reason, str):
        raise field_error("model_output_solution_first_error_reason", "a string or null", reason)
    answer = reference_answer(reference, given)
    meta: dict[str, Any] = {"id": uuid, "answer": answer, "question_type": kind, "first_error": first,
                            "first_error_reason": reason, "final_answer_correct": answer_ok == "correct",
                            "reference_solution": reference}
    if answer != (str(given).strip() if given is not None else None):
        meta["ground_truth_answer"] = given
    meta.update(extras(row, FIELDS))
    return StepwiseExample(question, steps, labels, meta)
