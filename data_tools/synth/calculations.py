"""Reading the calculations of a worked solution, with exact arithmetic over them.

A solution's calculations are read from its steps: GSM8K's ``<<expr=result>>`` annotations (with
the expression the text restates before them, "48/2 = <<48/2=24>>24", and the result it repeats
after), or, in steps without annotations, plain equations such as ``5 + 3 = 8``; only those that
evaluate to what they state are kept. Values are exact fractions; ``quantize`` rounds a result that
is not a short decimal to 2 places, as GSM8K writes them. ``variants`` corrupts what this reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from data_tools.formats.gsm8k import CALCULATION

_N = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER = re.compile(rf"(?<![\w.]){_N}(?!\w|\.\d)|(?<![\w.])\.\d+(?!\w)")
_OPS = {"+": "+", "-": "-", "−": "-", "*": "*", "x": "*", "×": "*", "/": "/", "÷": "/"}
_GAP = re.compile(r"[\s$()]*[-+*/x×÷−][\s$()]*")
_EQUATION = re.compile(rf"(?<![\w.])\(?\$?{_N}(?:[\s$()]*[-+*/×÷−][\s$()]*\$?{_N}|\s+x\s+\(?\$?{_N})+[\s)]*=\s*\$?{_N}")
_ENDS_WITH_EQUALS = re.compile(r"=\s*\$?\s*$")


# --- exact arithmetic over the expressions found in steps ---------------------------------------

def evaluate(expr: str) -> Fraction:
    """The exact value of an arithmetic expression (numbers, + - * /, parentheses); ValueError if not one."""
    tokens = re.findall(r"\d+(?:\.\d+)?|\.\d+|[-+*/()]|\S", expr)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom() -> Fraction:
        tok = take() if peek() is not None else None
        if tok == "-":
            return -atom()
        if tok == "(":
            value = add()
            if take() != ")":
                raise ValueError("unbalanced parentheses")
            return value
        if tok is None or not (tok[0].isdigit() or tok[0] == "."):
            raise ValueError(f"expected a number, got {tok!r}")
        return Fraction(tok)

    def mul() -> Fraction:
        value = atom()
        while peek() in ("*", "/"):
            op, rhs = take(), atom()
            value = value * rhs if op == "*" else value / rhs
        return value

    def add() -> Fraction:
        value = mul()
        while peek() in ("+", "-"):
            op, rhs = take(), mul()
            value = value + rhs if op == "+" else value - rhs
        return value

    try:
        value = add()
    except (IndexError, ZeroDivisionError) as exc:
        raise ValueError(str(exc)) from None
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos]!r}")
    return value


def quantize(value: Fraction) -> Fraction:
    """``value`` if it is a decimal of at most 4 places, else rounded to 2 (as GSM8K writes results)."""
    if (value * 10_000).denominator == 1:
        return value
    return Fraction(round(value * 100), 100)


def render(value: Fraction, like: str = "") -> str:
    """``value`` written like the number it replaces (thousands separators kept)."""
    if value.denominator == 1:
        text = f"{value.numerator:,}" if "," in like else str(value.numerator)
    else:
        text = f"{float(value):.4f}".rstrip("0")
    return text


# --- reading the calculations of a solution -----------------------------------------------------

@dataclass
class Token:
    start: int
    end: int
    text: str
    value: Fraction


@dataclass
class Calc:
    """One calculation in a step; token indices point into the step's numbers, spans into its text."""

    skeleton: list[tuple[str, object]]  # ("num", token index) | ("op", op index) | ("lit", "(" or ")")
    operands: list[int]
    ops: list[tuple[int, str]]  # (position in the text, operator character as written)
    result: int
    visible_operands: list[int] | None = None  # the text's restatement of an annotation's expression
    visible_ops: list[tuple[int, str]] | None = None
    visible_result: int | None = None


@dataclass
class Step:
    text: str
    tokens: list[Token]
    calcs: list[Calc]


def _skeleton(text: str, start: int, end: int, at: dict[int, int], tokens: list[Token]
              ) -> tuple[list[tuple[str, object]], list[int], list[tuple[int, str]]] | None:
    """The expression in ``text[start:end]`` as numbers, operators and parentheses; None if anything else."""
    skel: list[tuple[str, object]] = []
    operands: list[int] = []
    ops: list[tuple[int, str]] = []
    i = start
    while i < end:
        char = text[i]
        if i in at:
            skel.append(("num", at[i]))
            operands.append(at[i])
            i = tokens[at[i]].end
        elif char in " \t$,":
            i += 1
        elif char in "()":
            skel.append(("lit", char))
            i += 1
        elif char in _OPS:
            skel.append(("op", len(ops)))
            ops.append((i, char))
            i += 1
        else:
            return None
    return skel, operands, ops


def _expression(calc: Calc, values: Sequence[Fraction], ops: dict[int, str]) -> str:
    parts = []
    for kind, ref in calc.skeleton:
        if kind == "num":
            value = values[ref]  # type: ignore[index]
            parts.append(str(value) if value.denominator == 1 else f"({value.numerator}/{value.denominator})")
        elif kind == "op":
            pos, char = calc.ops[ref]  # type: ignore[index]
            parts.append(_OPS[ops.get(pos, char)])
        else:
            parts.append(str(ref))
    return " ".join(parts)


def _consistent(calc: Calc, tokens: list[Token]) -> bool:
    try:
        value = evaluate(_expression(calc, [t.value for t in tokens], {}))
    except ValueError:
        return False
    stated = tokens[calc.result].value
    return value == stated or quantize(value) == stated or round(value, 1) == stated


def parse_step(text: str) -> Step:
    """The numbers and the calculations of one step (those that evaluate to what they state)."""
    tokens = [Token(m.start(), m.end(), m.group(), Fraction(m.group().replace(",", "")))
              for m in _NUMBER.finditer(text)]
    at = {t.start: i for i, t in enumerate(tokens)}
    ending_at = {t.end: i for i, t in enumerate(tokens)}
    calcs: list[Calc] = []
    annotations = list(CALCULATION.finditer(text))
    bound = 0
    for m in annotations:
        inner_start, inner_end = m.start(1), m.end(1)
        eq = text.find("=", inner_start, inner_end)
        result = at.get(eq + 1)
        if eq < 0 or result is None or tokens[result].end != inner_end:
            bound = m.end()
            continue
        parts = _skeleton(text, inner_start, eq, at, tokens)
        if parts and parts[1]:
            calc = Calc(*parts, result=result, visible_result=at.get(m.end()))
            _pair_visible(calc, text, bound, m.start(), tokens)
            if _consistent(calc, tokens):
                calcs.append(calc)
        bound = m.end()
    if not annotations:
        for m in _EQUATION.finditer(text):
            eq = text.rfind("=", m.start(), m.end())
            result = ending_at.get(m.end())
            parts = _skeleton(text, m.start(), eq, at, tokens)
            if parts and result is not None and len(parts[1]) >= 2:
                calc = Calc(*parts, result=result)
                if _consistent(calc, tokens):
                    calcs.append(calc)
    return Step(text, tokens, calcs)


def _pair_visible(calc: Calc, text: str, bound: int, ann_start: int, tokens: list[Token]) -> None:
    """Find the text's own statement of the annotation's expression just before it ("4 x $3 = ")."""
    region = text[bound:ann_start]
    m = _ENDS_WITH_EQUALS.search(region)
    if not m:
        return
    eq = bound + m.start()
    before = [i for i, t in enumerate(tokens) if bound <= t.start and t.end <= eq]
    n = len(calc.operands)
    if len(before) < n or text[tokens[before[-1]].end:eq].strip(" \t$)"):
        return
    chosen = before[-n:]
    ops: list[tuple[int, str]] = []
    for a, b in zip(chosen, chosen[1:], strict=False):
        gap = text[tokens[a].end:tokens[b].start]
        if not _GAP.fullmatch(gap):
            return
        ops += [(tokens[a].end + offset, char) for offset, char in enumerate(gap) if char in _OPS]
    if [tokens[i].value for i in chosen] != [tokens[i].value for i in calc.operands] or len(ops) != len(calc.ops):
        return
    calc.visible_operands, calc.visible_ops = chosen, ops


def parse_solution(steps: Sequence[str]) -> list[Step]:
    """Every step parsed; a step without calculations simply has none to corrupt."""
    return [parse_step(s) for s in steps]
