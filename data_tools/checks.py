"""Step checks: the errors a written step shows by itself, found from its numbers alone (no model, no reference).

``check_steps(problem, steps)`` reads a solution the way the reference labeller does
(``data_tools.arithmetic.walk_steps``), but with nothing but the problem to go on, and returns for each
step the reason it is verifiably wrong, or None:

- **arithmetic**: a calculation the step writes is false (``48 / 2 = 25``), to the places its result is
  written with (10/3 = 3.33 and 7/2 = 3 hold);
- **a negative quantity**: a calculation that gives a count, price or time below zero;
- **a number from nowhere**: a new number that is neither in the problem (in digits or words), nor stated
  before in the solution, nor a common constant, and follows from no number before it by one operation
  (a misread or invented quantity);
- **an equation in x** (problems that ask for an unknown x) false for the value of x that the
  solution itself gives as its final answer. This rule needs the final answer: on a partial solution
  (a prefix in a search) it does not fire.

What it cannot see: right arithmetic on the wrong quantities, a wrong relation whose numbers all
follow from the problem, a dropped step. Those are the model's work; the checks only lower the score of
steps that are wrong for certain (``prm.scoring`` applies them when the artifact's ``step_checks`` is
on). On MR-GSM8K's model-written solutions they find the human-labelled first error in about a quarter
of the wrong ones (``benchmarks/real_errors.py --checks-only``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from data_tools.answers import extract_answer, to_number
from data_tools.arithmetic import walk_steps

_UNKNOWN = re.compile(r"\bx\b")
_STATED = ("hashes", "boxed", "answer_is")  # a final answer the solution states, not just its last number


def check_steps(problem: str, steps: Sequence[str]) -> list[str | None]:
    """Per step, why it is verifiably wrong by itself, or None; never raises on model output."""
    unknown = None
    if _UNKNOWN.search(problem):
        said = next((a for a in (extract_answer(s, _STATED) for s in reversed(steps)) if a is not None), None)
        unknown = to_number(said) if said is not None else None
    errors = walk_steps(problem, steps, unknown=unknown).errors
    return [errors.get(i) for i in range(len(steps))]


def first_checked_error(problem: str, steps: Sequence[str]) -> int:
    """Index of the first step ``check_steps`` finds wrong, -1 when none."""
    return next((i for i, why in enumerate(check_steps(problem, steps)) if why), -1)
