"""Rewriting one calculation of a step and carrying the new value through the later steps.

The realistic error kinds (``real_errors``) change a calculation's expression, not only a number
or an operator: a term added again, a conversion factor dropped, a whole calculation replaced by
the value it started from, a step left out. This module does the text work for them:

- ``site`` finds where a calculation lives in its step: the expression that is evaluated (an
  annotation's ``expr`` before ``=``, or a plain equation's left side) and the text's own restatement
  of it, paired strictly (``calculations._pair_visible``) or loosely, with words between the numbers
  ("9 years * 12 months/year = <<9*12=108>>108");
- ``rewrite_calc`` applies text edits to that expression (and its restatement), evaluates the edited
  annotation exactly, and writes the new result wherever the step states it; ``collapse_calc``
  replaces a calculation by a plain value;
- ``carry_from`` carries changed values (old -> new) through the following text and steps like
  ``variants._carry`` does, and refuses what a count cannot be: a negative number, or a fraction
  where the gold solution had a whole number that is not money.

``variants`` keeps its own carry for the slip, operator and operand kinds, so that their output
stays as it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from data_tools.formats.gsm8k import CALCULATION
from data_tools.synth.calculations import _OPS, Calc, Step, Token, _expression, evaluate, quantize, render
from data_tools.synth.cues import is_money

LIMIT = Fraction(10) ** 12
Edit = tuple[int, int, str]  # (start, end, replacement) in a step's text
_LOOSE_OP = re.compile(r"(?:(?<=[\s\d$(])|^)([-+*/x×÷−–])(?=[\s\d$(]|$)")
_ANSWER_LINE = re.compile(r"^\s*####")
_GLUED = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?=[A-Za-z])")  # "330km": not a token


def write(value: Fraction, like: str) -> str:
    """``value`` written like ``like``: thousands separators, and as many decimals ("12.50") where exact."""
    places = len(like.rsplit(".", 1)[1]) if "." in like and like.endswith("0") else 0  # "12.50", not ".2"
    if places and (value * 10 ** places).denominator == 1:
        text = f"{Decimal(value.numerator) / Decimal(value.denominator):.{places}f}"
        whole, _, frac = text.partition(".")
        return (f"{int(whole):,}" if "," in like else whole) + "." + frac
    return render(value, like)


def glued(text: str, lo: int = 0, hi: int | None = None) -> list[Fraction]:
    """Numbers written against a word ("330km", "5th") in ``text[lo:hi]``: the carry cannot rewrite them."""
    return [Fraction(m.group(1).replace(",", "") + (m.group(2) or ""))
            for m in _GLUED.finditer(text, lo, len(text) if hi is None else hi)]


@dataclass
class Site:
    """Where one calculation is written in its step's text."""

    expr: tuple[int, int]  # what is evaluated: an annotation's text before "=", or an equation's left side
    operands: list[int]  # its numbers (token indices) ...
    ops: list[tuple[int, str]]  # ... and operators (text position, character)
    visible: list[int] | None  # the text's restatement of an annotation's numbers, when it has one
    visible_ops: list[tuple[int, str]] | None
    strict: bool  # the restatement has nothing but numbers, operators, "$" between its numbers
    region: tuple[int, int]  # the text where a restatement would be (after the previous annotation)
    start: int  # where the calculation's text begins (its restatement, else its expression)
    end: int  # just after its last part (the result the text repeats, or the annotation)
    annotation: tuple[int, int] | None  # the "<<...>>" span
    parens: bool  # the expression has parentheses


def site(step: Step, calc: Calc) -> Site:
    text, tokens = step.text, step.tokens
    result = tokens[calc.result]
    parens = any(kind == "lit" for kind, _ in calc.skeleton)
    ann = next((m for m in CALCULATION.finditer(text) if m.start(1) <= result.start < m.end(1)), None)
    if ann is None:  # a plain equation: the calculation is its own restatement
        first = tokens[calc.operands[0]].start
        while first > 0 and text[first - 1] in "($":
            first -= 1
        eq = text.rfind("=", 0, result.start)
        return Site((first, eq), calc.operands, calc.ops, None, None, True, (first, first), first, result.end,
                    None, parens)
    bound = max([m.end() for m in CALCULATION.finditer(text) if m.end() <= ann.start()], default=0)
    eq = text.find("=", ann.start(1), ann.end(1))
    end = tokens[calc.visible_result].end if calc.visible_result is not None else ann.end()
    visible, visible_ops, strict = calc.visible_operands, calc.visible_ops, calc.visible_operands is not None
    if visible is None and not parens:
        visible, visible_ops = _loose_pair(step, calc, bound, ann.start())
    start = tokens[visible[0]].start if visible else ann.start()
    return Site((ann.start(1), eq), calc.operands, calc.ops, visible, visible_ops, strict, (bound, ann.start()),
                start, end, (ann.start(), ann.end()), parens)


def _loose_pair(step: Step, calc: Calc, bound: int, ann_start: int
                ) -> tuple[list[int] | None, list[tuple[int, str]] | None]:
    """The restatement with words between its numbers ("3 floors x 5 units = <<3*5=15>>"), or (None, None)."""
    text, tokens = step.text, step.tokens
    eq = text.rfind("=", bound, ann_start)
    if eq < 0 or text[eq + 1:ann_start].strip(" \t$"):
        return None, None
    before = [i for i, t in enumerate(tokens) if bound <= t.start and t.end <= eq]
    n = len(calc.operands)
    if len(before) < n or re.search(r"\d", text[tokens[before[-1]].end:eq]):
        return None, None
    chosen = before[-n:]
    if [tokens[i].value for i in chosen] != [tokens[i].value for i in calc.operands]:
        return None, None
    ops = []
    for k, (a, b) in enumerate(zip(chosen, chosen[1:], strict=False)):
        gap = text[tokens[a].end:tokens[b].start]
        found = list(_LOOSE_OP.finditer(gap))
        if len(found) != 1 or _OPS.get(found[0].group(1), "-") != _OPS[calc.ops[k][1]]:
            return None, None
        ops.append((tokens[a].end + found[0].start(1), found[0].group(1)))
    return chosen, ops


def restated(step: Step, s: Site, values: Sequence[Fraction]) -> bool:
    """Whether the text before an unpaired annotation states one of ``values`` (so editing only the
    annotation would leave the text saying something else)."""
    lo, hi = s.region
    return s.visible is None and (any(lo <= t.start and t.end <= hi and t.value in values for t in step.tokens)
                                  or any(v in values for v in glued(step.text, lo, hi)))


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    for start, end, repl in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + repl + text[end:]
    return text


def _shift(pos: int, edits: Sequence[Edit]) -> int:
    return pos + sum(len(repl) - (end - start) for start, end, repl in edits if end <= pos)


def value_of(expression: str) -> Fraction:
    """The exact value of an expression as a step writes it ("$12 x 3", "1,200 / 4"); ValueError if none."""
    return evaluate("".join(_OPS.get(c, c) for c in expression if c not in " \t$,"))


def _ahead(step: Step, calc: Calc, s: Site, value: Fraction, taken: frozenset[Fraction]) -> list[Edit] | str:
    """Edits for the numbers before the calculation that state its result ahead of it ("eats 83 seeds
    because 53 + 30 = 83"), or why they cannot be changed (their value may stand for another number)."""
    old = step.tokens[calc.result].value
    others = {i for c in step.calcs if c is not calc for i in [c.result, *c.operands, c.visible_result]}
    ahead = [t for i, t in enumerate(step.tokens) if t.end <= s.start and t.value == old and i not in others]
    if ahead and old in taken:
        return "a changed value that also stands for another number"
    return [(t.start, t.end, write(value, t.text)) for t in ahead]


def rewrite_calc(step: Step, calc: Calc, edits: Sequence[Edit], taken: frozenset[Fraction] = frozenset()
                 ) -> tuple[str, Fraction, int] | str:
    """The step with ``edits`` applied to one calculation and its result restated from the edited
    expression, where the step states it and ahead of it: (new text, new result, where the rewritten
    calculation ends); or why not (``taken``: values that may stand for other numbers)."""
    s = site(step, calc)
    lo, hi = s.expr
    inner = [(a - lo, b - lo, r) for a, b, r in edits if lo <= a and b <= hi]
    try:
        value = quantize(value_of(apply_edits(step.text[lo:hi], inner)))
    except ValueError:
        return "undefined (division by zero)"
    ahead = _ahead(step, calc, s, value, taken)
    if isinstance(ahead, str):
        return ahead
    results = [calc.result] + ([calc.visible_result] if calc.visible_result is not None else [])
    everything = list(edits) + ahead + [(step.tokens[i].start, step.tokens[i].end, write(value, step.tokens[i].text))
                                for i in results]
    return apply_edits(step.text, everything), value, _shift(s.end, everything)


def collapse_calc(step: Step, calc: Calc, value: Fraction, taken: frozenset[Fraction] = frozenset()
                  ) -> tuple[str, int] | str:
    """The step with one calculation replaced by a plain ``value`` ("3 x 12 = <<3*12=36>>36 eggs" ->
    "3 eggs"), and its result restated ahead of it: (new text, where the value ends); or why not."""
    s = site(step, calc)
    tokens = step.tokens
    if s.annotation is None:
        edits = [(s.start, tokens[calc.result].start, ""), (tokens[calc.result].start, tokens[calc.result].end,
                                                           write(value, tokens[calc.result].text))]
    elif calc.visible_result is not None:
        vis = tokens[calc.visible_result]
        eq = step.text.rfind("=", s.start, s.annotation[0])
        cut = eq + 1 if eq >= 0 else s.annotation[0]
        while cut < s.annotation[0] and step.text[cut] in " \t":
            cut += 1  # keep a "$" between "=" and the annotation
        edits = [(s.start, cut, ""), (s.annotation[0], s.annotation[1], ""),
                 (vis.start, vis.end, write(value, vis.text))]
    else:
        edits = [(s.start, s.annotation[1], write(value, tokens[calc.result].text))]
    if s.start == (s.annotation or (0, 0))[0] and restated(step, s, [tokens[i].value for i in calc.operands]):
        return "restated without a pairing"
    ahead = _ahead(step, calc, s, value, taken)
    if isinstance(ahead, str):
        return ahead
    edits += ahead
    return apply_edits(step.text, edits), _shift(s.end, edits)


def acceptable(old: Fraction, new: Fraction, text: str, token: Token, amount_ok: bool) -> str:
    """Why ``new`` cannot replace ``old`` at ``token`` of ``text`` ("" when it can)."""
    if new < 0:
        return "negative"
    if new == 0 and old != 0:
        return "zero"
    if new > LIMIT:
        return "too large"
    if old.denominator == 1 and new.denominator != 1 and not is_money(text, token):
        if not (amount_ok and _ANSWER_LINE.match(text)):
            return "not a whole number"
    return ""


def carry_from(steps: list[Step], start: int, changes: dict[Fraction, Fraction], fixed_end: int = 0,
               amount_ok: bool = False, taken: frozenset[Fraction] = frozenset()) -> tuple[list[str] | None, str]:
    """The texts of ``steps`` with ``changes`` carried from ``steps[start]`` (past ``fixed_end`` in it) on:
    later numbers equal to a changed value replaced, calculations that used one recomputed, their new
    results carried in turn. (None, why) when a carried value cannot stand, or when a number to
    replace has a value in ``taken`` (the problem's numbers, the numbers before the error), so that
    it may well stand for another quantity."""
    changes = dict(changes)
    out = [s.text for s in steps[:start]]
    for si in range(start, len(steps)):
        step = steps[si]
        if any(v in changes for v in glued(step.text, fixed_end if si == start else 0)):
            return None, "a changed value written against a word"
        new: dict[int, Fraction] = {}
        role: dict[int, tuple[str, int]] = {}
        for ci, calc in enumerate(step.calcs):
            role[calc.result] = ("result", ci)
            if calc.visible_result is not None:
                role[calc.visible_result] = ("visible", ci)
        known, changed_by = dict(changes), {}
        for ti, tok in enumerate(step.tokens):
            if si == start and tok.start < fixed_end:
                continue
            kind, ci = role.get(ti, ("plain", -1))
            value: Fraction | None
            if kind == "result":
                calc = step.calcs[ci]
                value = None
                if any(t in new for t in calc.operands):
                    try:
                        value = quantize(evaluate(_expression(
                            calc, [new.get(i, t.value) for i, t in enumerate(step.tokens)], {})))
                    except ValueError:
                        return None, "undefined (division by zero)"
                if value is not None and value != tok.value:
                    changes[tok.value], changed_by[tok.value] = value, calc
                elif value is None:
                    changes.pop(tok.value, None)  # derived again, independently: the same value is right here
            elif kind == "visible":
                value = new.get(step.calcs[ci].result)
            else:
                value = changes.get(tok.value)
                if value is not None and tok.value in taken:
                    return None, "a changed value that also stands for another number"
            if value is not None and value != tok.value:
                why = acceptable(tok.value, value, step.text, tok, amount_ok)
                if why:
                    return None, why
                new[ti] = value
        if new and any(not calc.ops for calc in step.calcs):
            return None, "a calculation its annotation does not write out"  # "1/2*110 = <<55=55>>55"
        # A result this step changed may be stated ahead of its calculation ("They eat 214 because ...").
        ahead = {old: v for old, v in changes.items() if known.get(old) != v and old in changed_by}
        for ti, tok in enumerate(step.tokens):
            if (tok.value in ahead and ti not in new and not (si == start and tok.start < fixed_end)
                    and tok.end <= site(step, changed_by[tok.value]).start):
                if tok.value in taken:
                    return None, "a changed value that also stands for another number"
                why = acceptable(tok.value, ahead[tok.value], step.text, tok, amount_ok)
                if why:
                    return None, why
                new[ti] = ahead[tok.value]
        edits = [(step.tokens[i].start, step.tokens[i].end, write(v, step.tokens[i].text)) for i, v in new.items()]
        out.append(apply_edits(step.text, edits))
    return out, ""
