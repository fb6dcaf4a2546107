"""Reference labels: the first step that leaves the reference solution, found from numbers alone (no rollouts).

A GSM8K reference solution states every intermediate result (``<<48/2=24>>24``). Each model-written
step is checked against those and the problem's numbers; no completer is involved, so this works
where no model can finish the problems. The rule (``judge``):

- **Anchored** numbers: the problem's (digits; ``3/5`` as 0.6 too; words: "twice", "a dozen", "two
  thirds", "one and a half") and every number the reference writes (its intermediate results and the
  constants its expressions use); a percentage also as its fraction and back (20% = 0.2, 0.8 = 80).
  Matching ignores the sign and a rounding to 2 places or to a whole number (33.33 or 33 for 100/3).
- A step **states** numbers: calculations (``180 * $50 = $9000``, ``20% of 1200 = 240``, chains
  ``a + b = c = d``; unit words, ``$``, thousands commas, ``%``, ``x`` as a times sign are read) and
  bare numbers ("he has 300 chickens"). **Arithmetic is checked**: a stated result that is not the
  value (to the places it is written with: 10/3 = 3.33, 7/2 = 3) is a slip, an error at that step;
  so is a negative result (counts, prices and times never go below zero).
- When the problem asks for an unknown ``x`` (MetaMath's "reversed" questions), the gold answer is
  its value: an equation in ``x`` false for it (``x + 2 = 6`` when x = 2) is an error.
- A **new number** (not anchored, not stated before in the solution, not a common constant: 0, 1, 2,
  7, 12, 24, 52, 60, 100, 365, 1000) must follow by one operation from the numbers available
  (arithmetic done in words: "half of them, 25"); one that follows from nothing is an error where it
  appears (a misread quantity).
- A right calculation whose result is not anchored **derives** a number: allowed, since another
  route may come back to the reference. But when the final answer is wrong, the earliest derived
  number it is built on (through operands, back to anchored numbers) is the error: right arithmetic
  on the wrong thing ("3 more than 4" done as 4 * 3 = 12 where the reference has 4 + 3 = 7) is
  caught where it left the reference. A derived number no wrong answer is built on is a detour.
- A **dropped step** (a later step uses 9000, which the reference computed and the solution never
  did) is no error: the number is anchored, it is right, only its calculation went unwritten.
- The **final answer** (of the last step that states a number) is right iff it matches the gold one
  (``data_tools.answers``). A wrong one that is anchored blames the calculation that reached it when
  the reference reaches that number from other operands (a coincidence), else (a reference
  intermediate given as the answer) the first of the closing steps that only restate it.

The first error is the earliest of these; it and every later step are labelled wrong (first-error
labels, as binary search writes them). A step without numbers is right unless it is the final
answer's. Nothing raises on model output; odd cases are counted (``LabelReport.odd``). Not promised:
an error whose wrong number happens to be anchored, or one that no number shows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from data_tools.answers import answers_match, extract_answer, to_number
from data_tools.arithmetic import Walk, fmt, near, signature, walk_steps
from data_tools.labelling.bank import Done, LabelReport, RolloutBank, collect
from data_tools.schema import DataError, StepwiseExample


@dataclass
class Judgement:
    first_error: int  # index of the first wrong step, -1 when none
    reasons: list[str]  # why each step was judged as it was
    odd: list[str] = field(default_factory=list)  # odd cases met (counted in LabelReport.odd)


def judge(problem: str, steps: Sequence[str], reference: str, gold: str) -> Judgement:
    """The first step that leaves the reference, by the rule of the module docstring; never raises on the steps."""
    unknown = to_number(gold) if re.search(r"\bx\b", problem) else None
    seen = walk_steps(problem, steps, reference, unknown, source="in neither the problem nor the reference")
    walk, parsed, errors, notes, odd = seen.walk, seen.parsed, seen.errors, seen.notes, seen.odd
    final = max((i for i, s in enumerate(steps) if extract_answer(s) is not None), default=None)
    if final is None:
        odd.append("no final answer")
    else:
        if final != len(steps) - 1:
            odd.append("final answer before the last step")
        said = extract_answer(steps[final]) or ""
        if answers_match(said, gold).correct:
            notes[final].append(f"final answer {said} matches")
        else:
            errors.setdefault(final, f"final answer {said}, gold {gold}")
            _blame(said, walk, parsed, final, errors)
    first = min(errors, default=-1)
    reasons = []
    for i in range(len(steps)):
        why = errors.get(i) or ("; ".join(["right", *notes[i]]) if parsed[i][0] else "right: no numbers")
        reasons.append(f"after the first error; {why}" if 0 <= first < i else why)
    return Judgement(first, reasons, odd)


def _blame(said: str, walk: Walk, parsed: list, final: int, errors: dict[int, str]) -> None:
    """Mark the step that took the solution to its wrong final answer ``said``."""
    if (value := to_number(said)) is None:
        return
    value = abs(value)
    node = walk.nodes.get(value)
    todo, ancestry = list(node.parents) if node else [], []
    while todo:  # what the wrong answer is built on, up to numbers the reference has
        if (n := todo.pop()) not in ancestry:
            ancestry.append(n)
            todo += n.parents
    derived = [n for n in ancestry + ([node] if node else []) if not near(abs(n.value), walk.anchored)]
    if derived:
        first = min(derived, key=lambda n: n.step)
        errors.setdefault(first.step, f"{fmt(first.value)} is in neither the problem nor the reference, and the "
                          f"wrong final answer {said} is built on it")
        return
    if node and node.calc and signature(node.calc) not in walk.calcs:
        errors.setdefault(node.step, f"{node.calc.text}: the wrong final answer, a number of the reference that "
                          "its own calculations reach otherwise")
        return
    j = final  # anchored: the first of the closing steps that only restate it
    while j > 0 and parsed[j - 1][0] and not parsed[j - 1][1] and {abs(n.value) for n in parsed[j - 1][0]} == {value}:
        j -= 1
    errors.setdefault(j, f"gives {said}, a number of the problem or the reference, as the final answer")


def reference_label_batch(examples: Sequence[StepwiseExample], bank: RolloutBank, done: Done,
                          reference_key: str = "reference_solution") -> None:
    """First-error labels by ``judge`` for a batch; the bank lends its answer key and report, no rollout is drawn."""
    for n, ex in enumerate(examples):
        missing = [k for k in (bank.answer_key, reference_key) if not ex.meta.get(k)]
        if missing:
            raise DataError(f"{ex.origin or f'example {n}'} has no meta['{missing[0]}'] (--method reference needs "
                            "the gold answer and the reference solution; name their keys with --answer-key and "
                            "--reference-key)")
        ref = ex.meta[reference_key]
        verdict = judge(ex.prompt, ex.steps, "\n".join(map(str, ref)) if isinstance(ref, list) else str(ref),
                        str(ex.meta[bank.answer_key]))
        bank.report.odd.update(verdict.odd)
        hard = [verdict.first_error < 0 or i < verdict.first_error for i in range(len(ex.steps))]
        out = StepwiseExample(ex.prompt, list(ex.steps), list(hard),
                              dict(ex.meta, hard_labels=hard, label_method="reference", step_reasons=verdict.reasons))
        out.origin = ex.origin
        done(n, out)


def reference_label(examples: Sequence[StepwiseExample], answer_key: str = "answer",
                    reference_key: str = "reference_solution") -> tuple[list[StepwiseExample], LabelReport]:
    """First-error labels for every example from its reference solution (``meta[reference_key]``); no completer."""
    bank = RolloutBank(None, 1, answer_key=answer_key)  # type: ignore[arg-type]
    return collect(partial(reference_label_batch, reference_key=reference_key), examples, bank), bank.report
