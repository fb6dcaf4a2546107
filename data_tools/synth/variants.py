"""Wrong variants of a correct solution: one calculation corrupted, the change carried through.

One calculation is corrupted: a slip (right expression, wrong result), a wrong operator (``+``/``-``,
``*``/``/`` swapped) or a wrong operand (one number changed), in the annotation and in the visible
text alike. The wrong value is then carried through: every later number equal to a changed value is
replaced, every later calculation that used one is recomputed, and its changed result is carried in
turn, so the later steps stay self-consistent and the final answer (``#### N``, "The answer is N")
changes. A variant is kept only when its final answer no longer matches the gold one.

Labels follow by construction: steps before the corrupted one are right, it and all later ones
wrong (``meta["first_error"]``, ``meta["error_kind"]``). Later steps use the rounded value of a
recomputed result. What is not promised: that a number which merely equals a changed value (a
coincidence in the question) is left alone, or that the prose around a wrong operator still reads
naturally.

These are the default kinds (``ERROR_KINDS``); ``real_errors`` adds kinds that imitate real model
errors (``REAL_ERROR_KINDS``: a wrong quantity, a misread relation, a dropped step, a double count,
a percentage or unit mishandled, a result in the wrong role), drawn here when ``kinds`` names them.
Asking only for the default kinds draws exactly what it drew before those existed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from data_tools.answers import answers_match, extract_answer
from data_tools.schema import StepwiseExample
from data_tools.synth.calculations import (
    _NUMBER,
    Calc,
    Step,
    Token,
    _expression,
    evaluate,
    parse_solution,
    quantize,
    render,
)
from data_tools.synth.problems import ERROR_KINDS, ground_truth_labels
from data_tools.synth.real_errors import NO_SITE, REAL_ERROR_KINDS, Solution, real_error

ALL_KINDS = ERROR_KINDS + REAL_ERROR_KINDS

# A wrong operator keeps the text's own symbols: "x" becomes "/", "÷" becomes "×".
_SWAP = {"+": "-", "-": "+", "−": "+", "*": "/", "x": "/", "×": "÷", "/": "*", "÷": "×"}
_LIMIT = Fraction(10) ** 12
DRAWS_PER_CHOICE = 3


@dataclass
class Injection:
    step: int
    calc: int
    kind: str
    forced_tokens: dict[int, Fraction] = field(default_factory=dict)
    forced_ops: dict[int, str] = field(default_factory=dict)  # text position -> new operator character
    slip: Fraction | None = None


def _propose(step_index: int, calc_index: int, calc: Calc, tokens: list[Token], kind: str,
             rng: random.Random) -> Injection | None:
    inj = Injection(step_index, calc_index, kind)
    if kind == "slip":
        old = tokens[calc.result].value
        options = [old + d for d in (1, -1, 2, -2, 10, -10)] + [old * 10]
        if old.denominator == 1 and old >= 10 and old % 10:
            options.append(Fraction(int(str(old.numerator)[::-1])))  # digits swapped: 24 -> 42
        options = [v for v in options if v >= 0 and v != old]
        inj.slip = rng.choice(options)
    elif kind == "operand":
        k = rng.randrange(len(calc.operands))
        old = tokens[calc.operands[k]].value
        options = [v for v in (old + d for d in (1, -1, 2, -2, 3, 10)) if v > 0 and v != old]
        if not options:
            return None
        new = rng.choice(options)
        inj.forced_tokens[calc.operands[k]] = new
        if calc.visible_operands:
            inj.forced_tokens[calc.visible_operands[k]] = new
    else:
        if not calc.ops:
            return None
        k = rng.randrange(len(calc.ops))
        for pos, char in [calc.ops[k]] + ([calc.visible_ops[k]] if calc.visible_ops else []):
            inj.forced_ops[pos] = _SWAP[char]
    return inj


def _carry(steps: list[Step], inj: Injection) -> list[str] | None:
    """The solution's steps with the injection applied and carried through; None if it goes wrong."""
    changes: dict[Fraction, Fraction] = {}
    out = [s.text for s in steps[:inj.step]]
    for si in range(inj.step, len(steps)):
        step = steps[si]
        new: dict[int, Fraction] = {}
        role: dict[int, tuple[str, int]] = {}
        for ci, calc in enumerate(step.calcs):
            role[calc.result] = ("result", ci)
            if calc.visible_result is not None:
                role[calc.visible_result] = ("visible", ci)
        ops = inj.forced_ops if si == inj.step else {}
        for ti, tok in enumerate(step.tokens):
            kind, ci = role.get(ti, ("plain", -1))
            value: Fraction | None
            if si == inj.step and ti in inj.forced_tokens:
                value = inj.forced_tokens[ti]
            elif kind == "result":
                calc = step.calcs[ci]
                if si == inj.step and ci == inj.calc and inj.kind == "slip":
                    value = inj.slip
                elif any(t in new for t in calc.operands) or any(p in ops for p, _ in calc.ops):
                    try:
                        value = quantize(evaluate(_expression(calc, [new.get(i, t.value) for i, t in
                                                                     enumerate(step.tokens)], ops)))
                    except ValueError:
                        return None
                else:
                    value = None
                if value is not None and value != tok.value:
                    changes[tok.value] = value
            elif kind == "visible":
                value = new.get(step.calcs[ci].result)
            else:
                value = changes.get(tok.value)
            if value is not None and value != tok.value:
                if value < 0 or value > _LIMIT:
                    return None
                new[ti] = value
        out.append(_rewrite(step, new, ops))
    return out


def _rewrite(step: Step, new: dict[int, Fraction], ops: dict[int, str]) -> str:
    edits = [(step.tokens[i].start, step.tokens[i].end, render(v, step.tokens[i].text)) for i, v in new.items()]
    edits += [(pos, pos + 1, char) for pos, char in ops.items()]
    text = step.text
    for start, end, repl in sorted(edits, reverse=True):
        text = text[:start] + repl + text[end:]
    return text


def inject_variants(example: StepwiseExample, rng: random.Random, n: int = 1,
                    kinds: Sequence[str] = ERROR_KINDS, gold: str | None = None,
                    why: Counter | None = None) -> list[StepwiseExample]:
    """Up to ``n`` distinct wrong variants of a correct solution (fewer when no valid error exists).

    ``kinds`` may name any of ``ALL_KINDS``. When no variant at all comes out, ``why`` (if given)
    counts the commonest reason, as "kind: reason" ("no calculation" when there is nothing to change).
    """
    gold = gold if gold is not None else example.meta.get("answer") or extract_answer(example.steps[-1])
    if gold is None:
        return []
    steps = parse_solution(example.steps)
    question_values = {Fraction(m.group().replace(",", "")) for m in _NUMBER.finditer(example.prompt)}
    candidates = [(si, ci, kind) for si, step in enumerate(steps) for ci in range(len(step.calcs)) for kind in kinds]
    rng.shuffle(candidates)
    # Changing a value that also appears in the question risks rewriting an unrelated number that
    # merely equals it, so such calculations are tried last.
    candidates.sort(key=lambda c: steps[c[0]].tokens[steps[c[0]].calcs[c[1]].result].value in question_values)
    solution = Solution(example.prompt, list(example.steps), steps) if set(kinds) & set(REAL_ERROR_KINDS) else None
    out: list[StepwiseExample] = []
    seen: set[tuple[str, ...]] = set()
    failed: Counter = Counter()
    for si, ci, kind in candidates:
        if len(out) == n:
            break
        # A draw can fail (a negative count later on, an unchanged final answer): try a few per choice.
        for _ in range(1 if kind == "dropped_step" else DRAWS_PER_CHOICE):  # dropped_step draws nothing
            detail = None
            if solution is not None and kind in REAL_ERROR_KINDS:
                made = real_error(solution, si, ci, kind, rng)
                if isinstance(made, str):
                    failed[f"{kind}: {made}"] += 1
                    continue
                wrong, first, detail = made
            else:
                inj = _propose(si, ci, steps[si].calcs[ci], steps[si].tokens, kind, rng)
                wrong, first = _carry(steps, inj) if inj else None, si
                if wrong is None:
                    failed[f"{kind}: no valid carry (a negative or undefined value)"] += 1
                    continue
            if tuple(wrong) in seen or wrong[first] == example.steps[first]:
                failed[f"{kind}: a duplicate or no change"] += 1
                continue
            final = extract_answer(wrong[-1])
            if final is None or answers_match(final, str(gold)).correct:
                failed[f"{kind}: final answer unchanged"] += 1
                continue
            seen.add(tuple(wrong))
            meta = dict(example.meta, answer=str(gold), first_error=first, error_kind=kind, wrong_answer=final)
            if detail is not None:
                meta["error_detail"] = detail
                if len(wrong) != len(example.steps):
                    meta.pop("gsm8k_layout", None)  # the layout of the solution with every step
            variant = StepwiseExample(example.prompt, wrong, None, meta)
            variant.labels = list(ground_truth_labels(variant))
            out.append(variant)
            break
    if why is not None and not out:
        # An error that was tried and refused says more than places where the kind does not apply.
        refused = Counter({k: v for k, v in failed.items() if k.split(": ", 1)[1] not in NO_SITE})
        why[(refused or failed).most_common(1)[0][0] if failed else "no calculation"] += 1
    return out
