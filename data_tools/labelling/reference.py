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
from fractions import Fraction
from functools import partial

from data_tools.answers import answers_match, extract_answer, to_number
from data_tools.labelling.bank import Done, LabelReport, RolloutBank, collect
from data_tools.schema import DataError, StepwiseExample
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
    calcs = {_signature(c) for line in reference.splitlines() for c in read_step(line)[1]}
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


def _signature(calc: Calc) -> tuple:
    return abs(calc.value), tuple(sorted(abs(n.value) for n in calc.operands))


def _near(value: Fraction, pool: set[Fraction]) -> bool:
    """``value`` in ``pool``, or a rounding of one of its non-integers (33.33 or 33 for 100/3)."""
    if value in pool:
        return True
    if value.denominator > 1:
        return any(abs(a - value) <= Fraction(1, 100) for a in pool)
    return any(a.denominator > 1 and (abs(a - value) <= Fraction(1, 100) or round(a) == value) for a in pool)


@dataclass(eq=False)
class _Node:  # a number a step states: computed, or not anchored (derived, a slip, or from nowhere)
    step: int
    value: Fraction
    parents: list[_Node] = field(default_factory=list)
    calc: Calc | None = None  # the calculation that stated it


@dataclass
class Judgement:
    first_error: int  # index of the first wrong step, -1 when none
    reasons: list[str]  # why each step was judged as it was
    odd: list[str] = field(default_factory=list)  # odd cases met (counted in LabelReport.odd)


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


class _Walk:
    """The numbers available while the steps are read in order, and the node of each derived one."""

    def __init__(self, anchored: set[Fraction], calcs: set[tuple]):
        self.anchored, self.calcs = anchored, calcs
        self.nodes: dict[Fraction, _Node] = {}  # by absolute value: the latest node stating it

    def known(self, value: Fraction) -> tuple[bool, _Node | None]:
        """(available, its node when it is derived): anchored, stated before, or a constant."""
        key = abs(value)
        if _near(key, self.anchored):
            return True, None
        return (True, self.nodes[key]) if key in self.nodes else (key in CONSTANTS, None)

    def follows(self, value: Fraction) -> list[_Node] | None:
        """The derived numbers ``value`` follows from by one operation ([] for none); None if from none."""
        key, pool = abs(value), self.anchored | CONSTANTS | set(self.nodes)
        for a in [*reversed(self.nodes), *sorted(self.anchored | CONSTANTS)]:  # the latest derived first
            for b in (key - a, a - key, key + a, a * key, *((key / a, a / key) if a and key else ())):
                if b > 0 and b != key and b in pool:
                    return [n for n in (self.nodes.get(a), self.nodes.get(b)) if n is not None]
        return None

    def add(self, step: int, value: Fraction, parents: Sequence[_Node | None], calc: Calc | None = None) -> None:
        self.nodes[abs(value)] = _Node(step, value, [p for p in parents if p is not None], calc)


def judge(problem: str, steps: Sequence[str], reference: str, gold: str) -> Judgement:
    """The first step that leaves the reference, by the rule of the module docstring; never raises on the steps."""
    walk = _Walk(*anchors(problem, reference))
    unknown = to_number(gold) if re.search(r"\bx\b", problem) else None
    errors: dict[int, str] = {}
    notes: list[list[str]] = [[] for _ in steps]
    odd: list[str] = []
    parsed = [read_step(s, unknown) for s in steps]

    def state(i: int, num: Num) -> _Node | None:
        ok, node = walk.known(num.value)
        if ok:
            return node
        parents = walk.follows(num.value)
        if parents is None:
            errors.setdefault(i, f"{_fmt(num.value)} is in neither the problem nor the reference and follows "
                              "from no number before it")
        else:
            notes[i].append(f"{_fmt(num.value)} follows in words")
        walk.add(i, num.value, parents or [])
        return walk.nodes[abs(num.value)]

    for i, (nums, calcs, relations) in enumerate(parsed):
        if not nums and not relations:
            odd.append("step without numbers")
        for text, holds in relations:
            if not holds:
                errors.setdefault(i, f"{text} is false for x = {gold} (the answer)")
        done: set[int] = set()
        for calc in calcs:
            parents = [state(i, n) for n in calc.operands]
            done.update(id(n) for n in [*calc.operands, calc.result])
            if calc.result is None:
                continue
            if not calc.ok():
                errors.setdefault(i, f"arithmetic: {calc.text} (it is {_fmt(calc.value)})")
            elif calc.stated < 0 and unknown is None:  # counts, prices, times: never below zero
                errors.setdefault(i, f"{calc.text}: a negative quantity")
            elif not _near(abs(calc.result.value), walk.anchored):
                notes[i].append(f"derives {_fmt(calc.result.value)}")
            walk.add(i, calc.result.value, parents, calc)  # an anchored one is a node too, for _blame
        for n in nums:
            if id(n) not in done:
                state(i, n)

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


def _blame(said: str, walk: _Walk, parsed: list, final: int, errors: dict[int, str]) -> None:
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
    derived = [n for n in ancestry + ([node] if node else []) if not _near(abs(n.value), walk.anchored)]
    if derived:
        first = min(derived, key=lambda n: n.step)
        errors.setdefault(first.step, f"{_fmt(first.value)} is in neither the problem nor the reference, and the "
                          f"wrong final answer {said} is built on it")
        return
    if node and node.calc and _signature(node.calc) not in walk.calcs:
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
