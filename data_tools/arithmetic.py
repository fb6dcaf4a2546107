"""Reading the arithmetic of a written solution step: its numbers, its calculations, and what follows from what.

``read_step`` finds a step's numbers (digits, ``$``, thousands commas, ``%``, ordinals) and its
calculations (``180 * $50 = $9000``, ``20% of 1200 = 240``, chains ``a + b = c = d``, running totals
``400 + 800 = 1200 - 240 = 960``; unit words and ``x`` as a times sign are read), and checks each
calculation to the places its result is written with (10/3 = 3.33 and 7/2 = 3 hold). ``anchors``
collects the numbers a solution may state without deriving them (the problem's, in digits and in
words, and a reference's when there is one). ``Walk`` follows the numbers a solution states in order;
``walk_steps`` runs it over a solution and returns the errors it can see in each step without knowing
the answer: a calculation that is false, a negative quantity, a number that follows from no number
before it, an equation in the problem's unknown x false for the value ``unknown``.

Two users: the reference labeller (``data_tools.labelling.reference``, which adds the final answer and
the reference's numbers) and the step checks (``data_tools.checks``, reference-free, applied at
scoring time). Nothing here raises on model output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from data_tools.synth.calculations import evaluate

CONSTANTS = frozenset(Fraction(c) for c in (0, 1, 2, 7, 12, 24, 52, 60, 100, 365, 1000))
_TOKEN = re.compile(r"(?P<n>(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?<![\w.])\.\d+)"
                    r"(?P<pct>\s?%|\s?percent\b)?(?:(?:st|nd|rd|th)\b)?(?P<glued>[A-Za-z])?"
                    r"|(?P<op>[-+*/×÷−–])|(?P<eq>=)|(?P<par>[()])|(?P<w>[A-Za-z]+)|(?P<sep>[.,;:!?<>\n]|\$)")
_OPS = {"×": "*", "÷": "/", "−": "-", "–": "-"}
_WORDS = dict(zip(("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                   "sixteen seventeen eighteen nineteen").split(), range(20), strict=True))
_WORDS |= {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_WORDS |= {"hundred": 100, "thousand": 1000, "dozen": 12, "twice": 2, "double": 2, "triple": 3, "thrice": 3}
_PARTS = dict(half=2, halve=2, third=3, quarter=4, fourth=4, fifth=5, sixth=6, seventh=7, eighth=8, ninth=9, tenth=10)
_VARS = ("x", "y", "z", "n")
Token = tuple[str, object, int, int]  # kind (n, op, eq, par, w, sep), value, start, end


@dataclass(eq=False)  # compared by identity: which number of a step is which
class Num:
    value: Fraction  # as used in arithmetic: 20% is 1/5
    places: int  # decimal places as written (of the percentage, for a percent)
    pct: bool
    glued: bool  # a letter follows at once: a coefficient (0.32x) or a unit (5km), never an operand alone


@dataclass
class Calc:
    operands: list[Num]
    result: Num | None  # None when both sides are expressions ("a * b = c * d")
    value: Fraction
    text: str
    stated: Fraction = Fraction(0)  # the result side's value (-4 for "= -4")

    def ok(self) -> bool:
        if self.result is None:
            return True
        scale, tol = 100 if self.result.pct else 1, Fraction(1, 10 ** self.result.places)
        # "100 - 50 = 50%": a percent result may be in the percentage points its operands are
        return abs(self.value - self.stated) * scale < tol or (self.result.pct and abs(self.value - self.stated * 100) < tol)


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    for m in _TOKEN.finditer(text):
        if m.group("n") is not None:  # an ordinal is its number: "1 + 1 = 2nd place"
            raw, pct = m.group("n").replace(",", ""), m.group("pct") is not None
            num = Num(Fraction(raw) / (100 if pct else 1), len(raw.partition(".")[2]), pct, bool(m.group("glued")))
            out.append(("n", num, m.start(), m.end("pct") if pct else m.end("n")))
            if m.group("glued"):
                out.append(("w", m.group("glued").lower(), m.start("glued"), m.end()))
        elif m.lastgroup == "op":
            out.append(("op", _OPS.get(m.group(), m.group()), m.start(), m.end()))
        elif m.lastgroup != "sep" or m.group() != "$":
            out.append((m.lastgroup, m.group().lower(), m.start(), m.end()))  # type: ignore[arg-type]
    for i in range(1, len(out) - 1):  # "4 x 3", "15 boxes x 20": a free-standing x before a number is a times sign
        kind, v, a, b = out[i]
        before, after = out[i - 1], out[i + 1]
        if (kind == "w" and v == "x" and a > before[3] and after[0] in ("n", "par") and after[1] != ")"
                and (before[0] == "n" or before[1] == ")" or (before[0] == "w" and before[1] not in _VARS))):
            out[i] = ("op", "*", a, b)
    return out


def _expression(toks: Sequence[Token], x: Fraction | None) -> tuple[Fraction, list[Num], int, bool] | None:
    """(value, numbers, operator count, uses x) when ``toks`` are exactly one arithmetic expression, else None.
    ``x``: the value of the unknown x, which is then read as a number (``2x``, ``(2/9)x``, ``x/100``)."""
    parts: list[str] = []
    nums: list[Num] = []
    ops = depth = units = 0
    want_operand, uses_x = True, False
    for j, (kind, v, _, _) in enumerate(toks):
        var = x is not None and kind == "w" and v == "x"
        if want_operand:
            if kind == "n" and (not v.glued or (x is not None and toks[j + 1:j + 2] and toks[j + 1][1] == "x")):
                parts.append(f"({v.value.numerator}/{v.value.denominator})" + ("*" if v.glued else ""))
                nums.append(v)  # type: ignore[arg-type]
                want_operand, units = v.glued, 0  # type: ignore[union-attr]
            elif var:
                parts.append(f"({x.numerator}/{x.denominator})")  # type: ignore[union-attr]
                want_operand, uses_x, units = False, True, 0
            elif kind == "par" and v == "(":
                parts.append("(")
                depth += 1
            elif kind == "op" and v == "-" and (not parts or parts[-1][-1] in "(+-*/"):
                parts.append("-")
            else:
                return None
        elif kind == "op" or (kind == "w" and v == "of" and not units):  # "20% of 1200", "3/5 of them"
            parts.append("*" if kind == "w" else str(v))
            ops, want_operand = ops + 1, True
        elif kind == "par" and v == ")" and depth:
            parts.append(")")
            depth -= 1
        elif (kind == "par" or var) and not units:  # "(1/3)(2/3)", "(2/9)x": side by side, a product
            parts += ["*", "(" if kind == "par" else f"({x.numerator}/{x.denominator})"]  # type: ignore[union-attr]
            depth, ops, want_operand, uses_x = depth + (kind == "par"), ops + 1, kind == "par", uses_x or var
        elif kind == "w" and units < 3 and v not in _VARS:
            units += 1  # "180 chickens * $50 per chicken", "55 miles per hour": unit words after a number
        else:
            return None
    if want_operand or depth or not (nums or uses_x):
        return None
    try:
        return evaluate(" ".join(parts)), nums, ops, uses_x
    except ValueError:
        return None


def _joins(tok: Token | None) -> bool:
    """Whether ``tok`` beside an expression makes it part of a longer one that is not arithmetic (algebra)."""
    return tok is not None and (tok[0] in ("op", "par", "n") or (tok[0] == "w" and tok[1] in _VARS))


def read_step(text: str, x: Fraction | None = None) -> tuple[list[Num], list[Calc], list[tuple[str, bool]]]:
    """The numbers of ``text`` in order, its calculations, and its equations in the unknown x (when its value
    ``x`` is given) with whether each holds."""
    toks = _tokens(text)
    calcs: list[Calc] = []
    relations: list[tuple[str, bool]] = []
    for k in (i for i, t in enumerate(toks) if t[0] == "eq"):
        lo = max((j for j in range(k) if toks[j][0] in ("eq", "sep")), default=-1) + 1
        hi = min((j for j in range(k + 1, len(toks)) if toks[j][0] in ("eq", "sep")), default=len(toks))
        s = next((s for s in range(lo, k) if _expression(toks[s:k], x)), None)
        e = next((e for e in range(hi, k + 1, -1) if _expression(toks[k + 1:e], x)), None)
        if s is None or e is None or _joins(toks[s - 1] if s > lo else None) or _joins(toks[e] if e < hi else None):
            continue
        left, right = _expression(toks[s:k], x), _expression(toks[k + 1:e], x)
        assert left is not None and right is not None
        shown = text[toks[s][2]:toks[e - 1][3]]
        if left[3] or right[3]:
            relations.append((shown, abs(left[0] - right[0]) <= max(1, abs(right[0])) / 100))
        elif not (left[2] or right[2]):
            continue  # a restatement or a unit conversion ("1 hour = 60 minutes")
        elif not right[2]:
            calcs.append(Calc(left[1], right[1][0], left[0], shown, right[0]))
        elif not left[2]:
            continue  # "60 kW would cost = $0.10*60 = $6": a name for what follows, not a result
        elif left[0] == right[0]:
            calcs.append(Calc(left[1] + right[1], None, left[0], shown))
        else:  # "400 + 800 = 1200 - 240 = 960": a running total; the left side is the right's first number
            calcs.append(Calc(left[1], right[1][0], left[0], shown, right[1][0].value))
    return [t[1] for t in toks if t[0] == "n"], calcs, relations  # type: ignore[misc]


def anchors(problem: str, reference: str) -> tuple[set[Fraction], set[tuple]]:
    """The numbers a solution may state without deriving them (see the module docstring), as absolute values,
    and the reference's calculations as (result, sorted operands)."""
    base: set[Fraction] = set()
    calcs = {signature(c) for line in reference.splitlines() for c in read_step(line)[1]}
    for text in (problem, reference):
        toks = _tokens(text)
        base.update(v for t in toks if t[0] == "n" for v in (t[1].value, t[1].value * 100 if t[1].pct else 0))
        for a, op, b in zip(toks, toks[1:], toks[2:], strict=False):  # "3/5" is 0.6 too
            if a[0] == b[0] == "n" and op[:2] == ("op", "/") and b[1].value:  # type: ignore[union-attr]
                base.add(a[1].value / b[1].value)  # type: ignore[union-attr]
        for line in text.splitlines():
            base.update(c.value for c in read_step(line)[1])
    words = re.findall(r"[a-z]+", problem.lower())
    for i, w in enumerate(words):
        prev = words[i - 1] if i else ""
        if w in _WORDS:
            base.add(Fraction(_WORDS[w]))
            if 20 <= _WORDS.get(prev, 0) <= 90 and _WORDS[w] < 10:
                base.add(Fraction(_WORDS[prev] + _WORDS[w]))  # twenty-five
        part = _PARTS.get(w.removesuffix("s"))
        if part:
            base.update((Fraction(part), Fraction(1, part)))
            if prev in _WORDS:
                base.add(Fraction(_WORDS[prev], part))  # two thirds
            if part == 2 and words[i - 2:i] == ["and", "a"] and i > 2 and words[i - 3] in _WORDS:
                base.add(_WORDS[words[i - 3]] + Fraction(1, 2))  # one and a half
    base = {abs(v) for v in base}
    return base | {v * 100 for v in base if v < 1}, calcs  # 0.25 as 25 (%)


def signature(calc: Calc) -> tuple:
    return abs(calc.value), tuple(sorted(abs(n.value) for n in calc.operands))


def near(value: Fraction, pool: set[Fraction]) -> bool:
    """``value`` in ``pool``, or a rounding of one of its non-integers (33.33 or 33 for 100/3)."""
    if value in pool:
        return True
    if value.denominator > 1:
        return any(abs(a - value) <= Fraction(1, 100) for a in pool)
    return any(a.denominator > 1 and (abs(a - value) <= Fraction(1, 100) or round(a) == value) for a in pool)


@dataclass(eq=False)
class Node:  # a number a step states: computed, or not anchored (derived, a slip, or from nowhere)
    step: int
    value: Fraction
    parents: list[Node] = field(default_factory=list)
    calc: Calc | None = None  # the calculation that stated it


def fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


class Walk:
    """The numbers available while the steps are read in order, and the node of each derived one."""

    def __init__(self, anchored: set[Fraction], calcs: set[tuple]):
        self.anchored, self.calcs = anchored, calcs
        self.nodes: dict[Fraction, Node] = {}  # by absolute value: the latest node stating it

    def known(self, value: Fraction) -> tuple[bool, Node | None]:
        """(available, its node when it is derived): anchored, stated before, or a constant."""
        key = abs(value)
        if near(key, self.anchored):
            return True, None
        return (True, self.nodes[key]) if key in self.nodes else (key in CONSTANTS, None)

    def follows(self, value: Fraction) -> list[Node] | None:
        """The derived numbers ``value`` follows from by one operation ([] for none); None if from none."""
        key, pool = abs(value), self.anchored | CONSTANTS | set(self.nodes)
        for a in [*reversed(self.nodes), *sorted(self.anchored | CONSTANTS)]:  # the latest derived first
            for b in (key - a, a - key, key + a, a * key, *((key / a, a / key) if a and key else ())):
                if b > 0 and b != key and b in pool:
                    return [n for n in (self.nodes.get(a), self.nodes.get(b)) if n is not None]
        return None

    def add(self, step: int, value: Fraction, parents: Sequence[Node | None], calc: Calc | None = None) -> None:
        self.nodes[abs(value)] = Node(step, value, [p for p in parents if p is not None], calc)


@dataclass
class Walked:
    """What ``walk_steps`` saw: the walk (its numbers), each step's parse, errors by step, notes, odd cases."""

    walk: Walk
    parsed: list
    errors: dict[int, str]
    notes: list[list[str]]
    odd: list[str]


def walk_steps(problem: str, steps: Sequence[str], reference: str = "", unknown: Fraction | None = None,
               source: str = "not in the problem") -> Walked:
    """Read ``steps`` in order against the numbers of ``problem`` (and ``reference``): the errors each step
    shows by itself (``source`` says, in the reasons, where an unanchored number is not)."""
    walk = Walk(*anchors(problem, reference))
    errors: dict[int, str] = {}
    notes: list[list[str]] = [[] for _ in steps]
    odd: list[str] = []
    parsed = [read_step(s, unknown) for s in steps]

    def state(i: int, num: Num) -> Node | None:
        ok, node = walk.known(num.value)
        if ok:
            return node
        parents = walk.follows(num.value)
        if parents is None:
            errors.setdefault(i, f"{fmt(num.value)} is {source} and follows from no number before it")
        else:
            notes[i].append(f"{fmt(num.value)} follows in words")
        walk.add(i, num.value, parents or [])
        return walk.nodes[abs(num.value)]

    for i, (nums, calcs, relations) in enumerate(parsed):
        if not nums and not relations:
            odd.append("step without numbers")
        for text, holds in relations:
            if not holds:
                errors.setdefault(i, f"{text} is false for x = {fmt(unknown)} (the answer)")  # type: ignore[arg-type]
        done: set[int] = set()
        for calc in calcs:
            parents = [state(i, n) for n in calc.operands]
            done.update(id(n) for n in [*calc.operands, calc.result])
            if calc.result is None:
                continue
            if not calc.ok():
                errors.setdefault(i, f"arithmetic: {calc.text} (it is {fmt(calc.value)})")
            elif calc.stated < 0 and unknown is None:  # counts, prices, times: never below zero
                errors.setdefault(i, f"{calc.text}: a negative quantity")
            elif not near(abs(calc.result.value), walk.anchored):
                notes[i].append(f"derives {fmt(calc.result.value)}")
            walk.add(i, calc.result.value, parents, calc)  # an anchored one is a node too, for blaming
        for n in nums:
            if id(n) not in done:
                state(i, n)
    return Walked(walk, parsed, errors, notes, odd)
