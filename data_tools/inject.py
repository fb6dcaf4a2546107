"""Error injection into worked solutions: a correct solution in, wrong ones out, first error known.

A solution's calculations are read from its steps: GSM8K's ``<<expr=result>>`` annotations (with
the expression the text restates before them, "48/2 = <<48/2=24>>24", and the result it repeats
after), or, in steps without annotations, plain equations such as ``5 + 3 = 8``. One calculation is
corrupted: a slip (right expression, wrong result), a wrong operator (``+``/``-``, ``*``/``/``
swapped) or a wrong operand (one number changed), in the annotation and in the visible text alike.
The wrong value is then carried through: every later number equal to a changed value is replaced,
every later calculation that used one is recomputed, and its changed result is carried in turn, so
the later steps stay self-consistent and the final answer (``#### N``, "The answer is N") changes.
A variant is kept only when its final answer no longer matches the gold one.

Labels follow by construction: steps before the corrupted one are right, it and all later ones
wrong (``meta["first_error"]``, ``meta["error_kind"]``). Values are exact fractions; a result that is
not a short decimal is rounded to 2 places, as GSM8K writes them, and later steps use the rounded
value. What is not promised: that a number which merely equals a changed value (a coincidence in
the question) is left alone, or that the prose around a wrong operator still reads naturally.

``data_tools.problems`` owns the demo's synthetic problems and their own, simpler injection.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from data_tools import formats
from data_tools.answers import answers_match, extract_answer
from data_tools.formats.fields import RowLog
from data_tools.formats.gsm8k import CALCULATION
from data_tools.problems import ERROR_KINDS, ground_truth_labels
from data_tools.schema import StepwiseExample

INPUT_FORMATS = {"gsm8k": "gsm8k", "jsonl": "stepwise"}
_N = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER = re.compile(rf"(?<![\w.]){_N}(?!\w|\.\d)|(?<![\w.])\.\d+(?!\w)")
_OPS = {"+": "+", "-": "-", "−": "-", "*": "*", "x": "*", "×": "*", "/": "/", "÷": "/"}
# A wrong operator keeps the text's own symbols: "x" becomes "/", "÷" becomes "×".
_SWAP = {"+": "-", "-": "+", "−": "+", "*": "/", "x": "/", "×": "÷", "/": "*", "÷": "×"}
_GAP = re.compile(r"[\s$()]*[-+*/x×÷−][\s$()]*")
_EQUATION = re.compile(rf"(?<![\w.])\(?\$?{_N}(?:[\s$()]*[-+*/×÷−][\s$()]*\$?{_N}|\s+x\s+\(?\$?{_N})+[\s)]*=\s*\$?{_N}")
_ENDS_WITH_EQUALS = re.compile(r"=\s*\$?\s*$")
_LIMIT = Fraction(10) ** 12
DRAWS_PER_CHOICE = 3


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


# --- corrupting one calculation and carrying the change ------------------------------------------

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
                    kinds: Sequence[str] = ERROR_KINDS, gold: str | None = None) -> list[StepwiseExample]:
    """Up to ``n`` distinct wrong variants of a correct solution (fewer when no valid error exists)."""
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
    out: list[StepwiseExample] = []
    seen: set[tuple[str, ...]] = set()
    for si, ci, kind in candidates:
        if len(out) == n:
            break
        # A draw can fail (a negative count later on, an unchanged final answer): try a few per choice.
        for _ in range(DRAWS_PER_CHOICE):
            inj = _propose(si, ci, steps[si].calcs[ci], steps[si].tokens, kind, rng)
            wrong = _carry(steps, inj) if inj else None
            if wrong is None or tuple(wrong) in seen or wrong[si] == example.steps[si]:
                continue
            final = extract_answer(wrong[-1])
            if final is None or answers_match(final, str(gold)).correct:
                continue
            seen.add(tuple(wrong))
            meta = dict(example.meta, answer=str(gold), first_error=si, error_kind=kind, wrong_answer=final)
            variant = StepwiseExample(example.prompt, wrong, None, meta)
            variant.labels = list(ground_truth_labels(variant))
            out.append(variant)
            break
    return out


# --- the command ---------------------------------------------------------------------------------

@dataclass
class InjectConfig:
    """Options of ``prm inject-errors``."""

    seed: int = 0
    """base seed; each problem's draws derive from (seed, problem id), so a run can be resumed"""
    variants: int = 1
    """wrong variants per problem, at most (distinct errors)"""
    kinds: tuple[str, ...] = ERROR_KINDS
    """error kinds to draw from: slip, operator, operand"""
    with_gold: bool = False
    """also write each problem's correct solution (all steps labelled right) before its variants"""
    strip_calculations: bool = False
    """remove <<expr=result>> annotations from the written steps"""
    skip_invalid: bool = False
    """count and skip malformed input rows instead of stopping"""

    def problems(self, input_format: str) -> list[str]:
        out = []
        if input_format not in INPUT_FORMATS:
            out.append(f"--format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}")
        if self.variants < 1:
            out.append(f"--variants must be at least 1, got {self.variants}")
        bad = [k for k in self.kinds if k not in ERROR_KINDS]
        if bad or not self.kinds:
            out.append(f"--kinds must name some of {', '.join(ERROR_KINDS)}, got {','.join(self.kinds) or 'none'}")
        return out


@dataclass
class InjectReport:
    problems: int = 0
    with_variant: int = 0
    variants: int = 0
    not_correct: int = 0
    log: RowLog = field(default_factory=RowLog)
    by_kind: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def coverage(self) -> float:
        """Share of correct solutions that got a wrong variant (whose final answer differs from gold)."""
        return self.with_variant / max(self.problems, 1)

    def summary(self) -> str:
        text = (f"{self.problems} correct solutions, {self.with_variant} with a wrong variant "
                f"(coverage {self.coverage:.1%}), {self.variants} variants written "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.by_kind.items()))}) in {self.seconds:.1f} s")
        if self.not_correct:
            text += f"; {self.not_correct} solutions not known to be correct were left out"
        return text + self.log.note()


def _strip(example: StepwiseExample) -> StepwiseExample:
    steps = [CALCULATION.sub("", s) for s in example.steps]
    return StepwiseExample(example.prompt, steps, example.labels, example.meta)


def inject_errors(input_path: str | Path, output_path: str | Path, input_format: str = "gsm8k",
                  config: InjectConfig | None = None) -> InjectReport:
    """Write wrong variants (stepwise JSONL, hard labels) of every correct solution in the input."""
    config = config or InjectConfig()
    problems = config.problems(input_format)
    problems += formats.path_problems(input_path, output_path)
    if problems:
        raise ValueError("; ".join(problems))
    start = time.perf_counter()
    report = InjectReport(log=RowLog(skip_invalid=config.skip_invalid))

    def examples() -> Iterator[StepwiseExample]:
        for n, example in enumerate(formats.read(INPUT_FORMATS[input_format], input_path, report.log)):
            labels = example.labels or []
            if example.meta.get("first_error", -1) >= 0 or any(lab is not None and not lab for lab in labels):
                report.not_correct += 1
                continue
            report.problems += 1
            pid = str(example.meta.get("id", f"{n:05d}"))
            base = dict(example.meta, id=pid, problem_id=pid)
            gold = StepwiseExample(example.prompt, example.steps, [True] * len(example.steps),
                                   dict(base, id=f"{pid}-gold", first_error=-1, error_kind=None))
            variants = inject_variants(gold, random.Random(f"{config.seed}:{pid}"), config.variants, config.kinds)
            for k, variant in enumerate(variants):
                variant.meta["id"] = f"{pid}-err{k}"
            report.with_variant += bool(variants)
            report.variants += len(variants)
            report.by_kind.update(v.meta["error_kind"] for v in variants)
            for out in ([gold] if config.with_gold else []) + variants:
                yield _strip(out) if config.strip_calculations else out

    formats.write("stepwise", output_path, examples(), report.log)
    report.seconds = time.perf_counter() - start
    return report
