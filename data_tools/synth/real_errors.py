"""Error kinds that imitate real model errors on GSM8K-level problems, each carried through.

Real wrong solutions are mostly not slips: a number taken from the wrong place, a relation misread,
a step left out or a quantity counted twice, a percentage or a unit mishandled, a result used in the
wrong role (see MR-GSM8K's annotations). Each kind here changes one calculation (or leaves one step
out) with right arithmetic on the wrong thing, then carries the new value through every later step
(``rewrite.carry_from``), so the rest stays self-consistent and the final answer changes:

- ``wrong_quantity``: an operand that is a number of the problem replaced by another number of the
  problem (a percentage by a percentage, money by money where the problem has one; not the parts
  of a fraction such as "2/5");
- ``misread_relation``: a single-operator calculation that applies a relation the problem words
  ("3 more than" as + 3, "twice" as * 2, "half" as / 2, "5 fewer than" as - 5) done with the
  misread operator: more than -> times or less than, less than -> more than, times -> more than
  (twice -> half), half/third/quarter -> double/triple/quadruple; each worded relation belongs to
  the first calculation that applies it. Where no worded relation fits, a percentage change read
  as the percentage itself ("25% off": * 0.75 done as * 0.25; "20% more": * 1.2 done as * 0.2);
- ``dropped_step``: a step with one calculation left out; later steps use the value it started
  from (the latest earlier result among its operands, else its largest operand) instead of its
  result; when it was the last calculation, the answer is the value before it. The
  first wrong step is the first later step whose text changes (the first to use the stale value):
  the steps in between are still right, as a prefix that has not yet used the result can still be
  completed correctly. The variant is one step shorter;
- ``double_count``: in a sum (or a difference), one term added (subtracted) again;
- ``unit_or_percent``: a percentage used as a whole number ("/100" or "*0.01" dropped, 0.2 written
  as 20) or a whole percentage used as a fraction (20 as 0.2); or a unit conversion the problem's
  units imply (60 minutes an hour, 12 a dozen, 100 cents a dollar, ...) forgotten: the factor
  dropped from a longer calculation, or a calculation that only converts replaced by the
  unconverted value ("3 x 12 = <<3*12=36>>36 eggs" -> "3 eggs");
- ``wrong_role``: a two-number difference or quotient with an earlier result turned around
  (subtracted from instead of subtracting, divided the other way; mostly refused, as it goes
  negative or fractional), or the previous result used where an earlier result was meant (where a
  number of the problem was meant, when the calculation uses no earlier result but the previous).

Every kind refuses (and says why) rather than write a negative number, a zero where there was
none, or a fraction where the gold solution has a whole number that is not money
(``rewrite.acceptable``), or rewrite a later number whose value is also one of the problem's or
one written before the error (it may stand for another quantity). ``variants.inject_variants``
draws among these and the slip/operator/operand kinds; ``meta["error_detail"]`` says what was done.
Not promised: that every worded relation or unit is found, or that the prose around a changed
number still reads naturally ("3+$4000 = $4003" for a misread "three times").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

from data_tools.synth.calculations import _OPS, Calc, Step, parse_step, render
from data_tools.synth.cues import Relation, asks_amount, conversions, quantities, relations
from data_tools.synth.rewrite import (
    Edit,
    Site,
    acceptable,
    carry_from,
    collapse_calc,
    restated,
    rewrite_calc,
    site,
    write,
)

REAL_ERROR_KINDS = ("wrong_quantity", "misread_relation", "dropped_step", "double_count", "unit_or_percent",
                    "wrong_role")
# Reasons that say the kind has no place in a calculation, as opposed to an error that was refused.
NO_SITE = frozenset({
    "no number of the problem in the calculation", "no other number of the problem", "no relation the problem words",
    "not one calculation in the step", "the last step", "no other value to fall back on", "not a sum or difference",
    "no percentage or unit conversion in the calculation", "no earlier result in the calculation",
    "no operation in the calculation", "a sign, not only operations"})
_MISREAD = {"+": ("*", "-"), "-": ("+",), "*": ("+",), "/": ("*",)}
_SAYS = {"+": "{} more", "-": "{} less", "*": "{} times", "/": "1/{} of"}


@dataclass
class Proposal:
    step: int
    text: str | None  # the rewritten step; None: the step is left out
    fixed_end: int  # where the rewritten calculation ends in ``text`` (the carry starts after it)
    changes: dict[Fraction, Fraction]
    detail: str


class Solution:
    """A correct solution, parsed, with what its problem's wording says."""

    def __init__(self, prompt: str, texts: list[str], steps: list[Step]) -> None:
        self.prompt, self.texts, self.steps = prompt, texts, steps
        qs = quantities(prompt)
        self.percent = {q.value for q in qs if q.percent} | {
            t.value for step in steps for t in step.tokens if step.text[t.end:t.end + 1] == "%"}
        self.money = {q.value for q in qs if q.money}
        self.all_numbers = {q.value for q in qs}
        self.numbers = {q.value for q in qs if not q.fraction} - {Fraction(0), Fraction(1)}
        self.conversions = conversions(prompt, self.all_numbers)
        self.amount_ok = asks_amount(prompt)
        self.results = [(si, step.tokens[c.result].value) for si, step in enumerate(steps) for c in step.calcs]
        # Each worded relation belongs to the first calculation that applies it, no other.
        self.relation_at: dict[tuple[int, int], Relation] = {}
        for rel in relations(prompt):
            for si, step in enumerate(steps):
                at = next((ci for ci, c in enumerate(step.calcs) if (si, ci) not in self.relation_at
                           and _applies(step, c, rel)), None)
                if at is not None:
                    self.relation_at[si, at] = rel
                    break
        written = " ".join(texts)
        self.style = {"+": "+", "-": "-", "*": "x" if " x " in written else "×" if "×" in written else "*",
                      "/": "÷" if "÷" in written else "/"}

    def taken(self, si: int) -> frozenset[Fraction]:
        """Values a later number may stand for other than a changed one: the problem's numbers and
        those written before step ``si``."""
        return frozenset(self.all_numbers | {t.value for step in self.steps[:si] for t in step.tokens}) - {
            Fraction(0), Fraction(1)}

    def before(self, si: int) -> list[Fraction]:
        """Results of the calculations before step ``si``, oldest first."""
        return [v for s, v in self.results if s < si]


def _value(step: Step, i: int) -> Fraction:
    return step.tokens[i].value


def _tokens(step: Step, s: Site, k: int, value: Fraction) -> list[Edit]:
    """Operand ``k`` written as ``value`` in the annotation and in the text's restatement of it."""
    out = []
    for i in [s.operands[k]] + ([s.visible[k]] if s.visible else []):
        tok = step.tokens[i]
        out.append((tok.start, tok.end, write(value, tok.text)))
    return out


def _finish(sol: Solution, si: int, calc: Calc, s: Site, edits: list[Edit], touched: list[Fraction],
            detail: str) -> Proposal | str:
    step = sol.steps[si]
    if restated(step, s, touched):
        return "restated without a pairing"
    done = rewrite_calc(step, calc, edits, sol.taken(si))
    if isinstance(done, str):
        return done
    text, value, end = done
    old = _value(step, calc.result)
    if value == old:
        return "result unchanged"
    why = acceptable(old, value, step.text, step.tokens[calc.visible_result if calc.visible_result is not None
                                                         else calc.result], sol.amount_ok)
    return why or Proposal(si, text, end, {old: value}, detail)


def _wrong_quantity(sol: Solution, si: int, calc: Calc, s: Site, rng: random.Random) -> Proposal | str:
    step = sol.steps[si]
    ks = [k for k, i in enumerate(s.operands) if _value(step, i) in sol.numbers]
    if not ks:
        return "no number of the problem in the calculation"
    k = rng.choice(ks)
    old = _value(step, s.operands[k])
    pool = sorted(v for v in sol.numbers if v != old and (v in sol.percent) == (old in sol.percent))
    same = [v for v in pool if (v in sol.money) == (old in sol.money)]
    if not pool:
        return "no other number of the problem"
    new = rng.choice(same or pool)
    return _finish(sol, si, calc, s, _tokens(step, s, k, new), [old],
                   f"{render(old)} taken as {render(new)}, another number of the problem")


def _applies(step: Step, calc: Calc, rel: Relation) -> bool:
    """Whether ``calc`` applies ``rel``: one operator, the relation's, with its amount ("21 - 15" for "15 less")."""
    if len(calc.ops) != 1 or any(kind == "lit" for kind, _ in calc.skeleton):
        return False
    a, b = (_value(step, i) for i in calc.operands)
    return _OPS[calc.ops[0][1]] == rel.op and (b == rel.amount or (rel.op in "+*" and a == rel.amount))


def _misread_relation(sol: Solution, si: int, calc: Calc, s: Site, rng: random.Random) -> Proposal | str:
    step = sol.steps[si]
    rel = sol.relation_at.get((si, step.calcs.index(calc)))
    if rel is None:
        return _misread_percent(sol, si, calc, s)
    op = rel.op
    new = "/" if op == "*" and rel.amount == 2 else rng.choice(_MISREAD[op])
    edits = [(s.ops[0][0], s.ops[0][0] + 1, new)]
    if s.visible_ops:
        edits.append((s.visible_ops[0][0], s.visible_ops[0][0] + 1, sol.style[new]))
    said = _SAYS[new].format(render(rel.amount))
    return _finish(sol, si, calc, s, edits, [_value(step, i) for i in s.operands], f"'{rel.phrase}' read as {said}")


def _misread_percent(sol: Solution, si: int, calc: Calc, s: Site) -> Proposal | str:
    """A percentage change ("20% off": * 0.8, "20% more": * 1.2) read as the percentage of (* 0.2)."""
    step = sol.steps[si]
    if any(_OPS[c] != "*" for _, c in s.ops):
        return "no relation the problem words"
    for k, i in enumerate(s.operands):
        v = _value(step, i)
        for part, said in ((1 - v, "100% less {}%"), (v - 1, "100% plus {}%")):
            if 0 < part < 1 and part * 100 in sol.percent:
                p = render(part * 100)
                detail = f"{render(v * 100)}% ({said.format(p)}) taken as {p}%"
                return _finish(sol, si, calc, s, _tokens(step, s, k, part), [v], detail)
    return "no relation the problem words"


def _dropped_step(sol: Solution, si: int, calc: Calc, s: Site, rng: random.Random) -> Proposal | str:
    step = sol.steps[si]
    if len(step.calcs) != 1:
        return "not one calculation in the step"
    if si == len(sol.steps) - 1:
        return "the last step"
    result, operands = _value(step, calc.result), [_value(step, i) for i in s.operands]
    # The value the step started from: the latest earlier result it used, else its largest number
    # (the whole that "1/5 * 200" takes a part of, the 48 that "48 / 2" halves).
    fallback = next((v for v in reversed(sol.before(si)) if v in operands), max(operands))
    if fallback == result:
        return "no other value to fall back on"
    lo, hi = s.expr
    if s.visible and s.annotation:  # as the text writes it
        lo, hi = s.start, step.text.rfind("=", s.start, s.annotation[0])
    said = step.text[lo:hi].strip()
    return Proposal(si, None, 0, {result: fallback}, f"step {si + 1} ({said} = {render(result)}) left out: "
                    f"{render(fallback)} used instead of {render(result)}")


def _double_count(sol: Solution, si: int, calc: Calc, s: Site, rng: random.Random) -> Proposal | str:
    step, text = sol.steps[si], sol.steps[si].text
    ops = [_OPS[c] for _, c in s.ops]
    if s.parens or any(o not in "+-" for o in ops):
        return "not a sum or difference"
    signs = ["+"] + ops
    ks = [k for k in range(len(signs)) if "-" not in ops or signs[k] == "-"]
    k = rng.choice(ks)
    edits = []
    for operands, op_list in [(s.operands, s.ops)] + ([(s.visible, s.visible_ops)] if s.visible else []):
        j = max(k, 1)  # the gap before term j, with its operator made the term's sign
        pos, char = op_list[j - 1]
        sign = char if (signs[k] == "-") == (_OPS.get(char, "-") == "-") else signs[k]
        gap = text[step.tokens[operands[j - 1]].end:pos] + sign + text[pos + 1:step.tokens[operands[j]].start]
        last = step.tokens[operands[-1]]
        edits.append((last.end, last.end, gap + step.tokens[operands[k]].text))
    term = _value(step, s.operands[k])
    did = "added" if signs[k] == "+" else "subtracted"
    return _finish(sol, si, calc, s, edits, [term], f"{render(term)} counted twice ({did} again)")


def _drop_operand(step: Step, calc: Calc, s: Site, k: int) -> list[Edit] | None:
    """Edits that remove operand ``k`` with the operator joining it ("2*60*5" -> "2*5"), or None."""
    at = calc.skeleton.index(("num", s.operands[k])) if ("num", s.operands[k]) in calc.skeleton else -1
    if at < 0:
        return None
    pairs = [(s.operands, s.ops)] + ([(s.visible, s.visible_ops)] if s.visible else [])
    if s.visible and not s.strict:
        return None  # words between the numbers: no clean cut
    text, edits = step.text, []
    for operands, ops in pairs:
        tok = step.tokens[operands[k]]
        if k > 0 and calc.skeleton[at - 1] == ("op", k - 1):
            start = ops[k - 1][0]
            while start > 0 and text[start - 1] in " \t":
                start -= 1
            edits.append((start, tok.end, ""))
        elif (k == 0 and at + 1 < len(calc.skeleton) and calc.skeleton[at + 1] == ("op", 0)
              and _OPS[ops[0][1]] == "*"):
            end = ops[0][0] + 1
            while end < len(text) and text[end] in " \t":
                end += 1
            edits.append((tok.start, end, ""))
        else:
            return None
    return edits


def _unit_or_percent(sol: Solution, si: int, calc: Calc, s: Site, rng: random.Random) -> Proposal | str:
    step = sol.steps[si]
    values = [_value(step, i) for i in s.operands]
    ops = [_OPS[c] for _, c in s.ops]
    options = []
    for k, v in enumerate(values):
        if sol.percent and ((v == 100 and k > 0 and ops[k - 1] == "/") or (v == Fraction(1, 100) and "*" in ops)):
            said = f"/{render(v)}" if v == 100 else f"*{render(v)}"
            options.append(("drop", k, f"a percentage used as a whole number (the {said} left out)"))
        if 0 < v < 1 and v * 100 in sol.percent:
            options.append(("set", k, v * 100, f"{render(v * 100)}% used as {render(v * 100)}, not {render(v)}"))
        if v in sol.percent and v not in sol.money and v != 100 and 100 not in values[k + 1:k + 2]:
            said = f"{render(v)} (a percentage, as a whole number) used as {render(v / 100)}"
            options.append(("set", k, v / 100, said))
        # a factor that converts: it multiplies, or divides what comes before it
        converts = v in sol.conversions and ((k > 0 and ops[k - 1] in "*/") or (k == 0 and ops[0] == "*"))
        if converts and len(values) >= 3:
            options.append(("drop", k, f"the conversion by {render(v)} ({sol.conversions[v]}) forgotten"))
        elif converts and len(values) == 2 and not s.parens:
            options.append(("collapse", 1 - k, f"the conversion by {render(v)} ({sol.conversions[v]}) forgotten"))
    if not options:
        return "no percentage or unit conversion in the calculation"
    choice = rng.choice(options)
    if choice[0] == "set":
        _, k, new, detail = choice
        return _finish(sol, si, calc, s, _tokens(step, s, k, new), [values[k]], detail)
    if choice[0] == "drop":
        _, k, detail = choice
        edits = _drop_operand(step, calc, s, k)
        if edits is None:
            return "no clean cut for the dropped number"
        return _finish(sol, si, calc, s, edits, [values[k]], detail)
    _, keep, detail = choice
    done = collapse_calc(step, calc, values[keep], sol.taken(si))
    if isinstance(done, str):
        return done
    old = _value(step, calc.result)
    why = acceptable(old, values[keep], step.text, step.tokens[calc.result], sol.amount_ok)
    return why or Proposal(si, done[0], done[1], {old: values[keep]}, detail)


def _wrong_role(sol: Solution, si: int, calc: Calc, s: Site, rng: random.Random) -> Proposal | str:
    step = sol.steps[si]
    values = [_value(step, i) for i in s.operands]
    earlier = sol.before(si)
    options = []
    if len(values) == 2 and not s.parens and _OPS[s.ops[0][1]] in "-/" and set(values) & set(earlier):
        said = "subtracted from instead of subtracting" if _OPS[s.ops[0][1]] == "-" else "divided the other way"
        options.append(("swap", said))
    if earlier:
        previous, substitutes = earlier[-1], []
        for k, v in enumerate(values):
            if v != previous and v in earlier[:-1]:
                substitutes.append((k, f"the previous result {render(previous)} used where {render(v)} was meant"))
        if not substitutes and previous not in values:  # else where a number of the problem was meant
            substitutes = [(k, f"the previous result {render(previous)} used where {render(v)} "
                               "(a number of the problem) was meant")
                           for k, v in enumerate(values) if v != previous and v in sol.numbers]
        options += substitutes
    if not options:
        return "no earlier result in the calculation"
    what, detail = rng.choice(options)
    if what == "swap":
        edits = _tokens(step, s, 0, values[1]) + _tokens(step, s, 1, values[0])
        return _finish(sol, si, calc, s, edits, values, detail)
    return _finish(sol, si, calc, s, _tokens(step, s, what, earlier[-1]), [values[what]], detail)


_PROPOSE = {"wrong_quantity": _wrong_quantity, "misread_relation": _misread_relation, "dropped_step": _dropped_step,
            "double_count": _double_count, "unit_or_percent": _unit_or_percent, "wrong_role": _wrong_role}


def real_error(sol: Solution, si: int, ci: int, kind: str, rng: random.Random
               ) -> tuple[list[str], int, str] | str:
    """One error of ``kind`` at calculation ``ci`` of step ``si``, carried through:
    (the wrong solution's steps, its first wrong step, what was done), or why there is none."""
    calc = sol.steps[si].calcs[ci]
    if not calc.ops:
        return "no operation in the calculation"
    if len(calc.ops) != len(calc.operands) - 1:
        return "a sign, not only operations"  # "-5 + 3": not worth the special cases
    prop = _PROPOSE[kind](sol, si, calc, site(sol.steps[si], calc), rng)
    if isinstance(prop, str):
        return prop
    taken = sol.taken(si)
    if prop.text is None:
        steps = sol.steps[:si] + sol.steps[si + 1:]
        wrong, why = carry_from(steps, si, prop.changes, 0, sol.amount_ok, taken)
        if wrong is None:
            return why
        first = next((i for i in range(si, len(wrong)) if wrong[i] != sol.texts[i + 1]), -1)
        return (wrong, first, prop.detail) if first >= 0 else "nothing later used the result"
    steps = sol.steps[:si] + [parse_step(prop.text)] + sol.steps[si + 1:]
    wrong, why = carry_from(steps, si, prop.changes, prop.fixed_end, sol.amount_ok, taken)
    return (wrong, si, prop.detail) if wrong is not None else why
