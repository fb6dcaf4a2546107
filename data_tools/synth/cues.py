"""What a problem's wording says, as far as the realistic error kinds (``real_errors``) need it.

The numbers it states (digits and number words, with whether each is a percentage or an amount of
money), the relations it words ("3 more than", "twice as many", "half of", "5 fewer than"), the unit
conversions its units imply (minutes and hours: 60; dozens: 12; cents and dollars: 100, ...), and
whether the question asks for a count ("how many") or an amount ("how much"). Plain regular
expressions over English text: what is not promised is reading every way a problem can say these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from data_tools.synth.calculations import _NUMBER, Token

WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
         "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
         "hundred": 100}
_WORD = re.compile(r"\b(" + "|".join(WORDS) + r")\b", re.IGNORECASE)
_NUM = r"(\d+(?:\.\d+)?|" + "|".join(WORDS) + r"|one)"
_FILL = r"(?:[a-z$'-]+\s+){0,3}?"  # up to three words between the number and the relation
_FAR = r"(?:[a-z$'-]+\s+){0,6}?"  # up to six between "more" and "than"


@dataclass(frozen=True)
class Quantity:
    """A number the problem states."""

    value: Fraction
    percent: bool  # "20%", "20 percent"
    money: bool  # "$20", "20 dollars"
    fraction: bool = False  # a part of a fraction: the 2 or the 5 of "2/5"


@dataclass(frozen=True)
class Relation:
    """A relation the problem words: ``op`` applied with ``amount`` ("3 more than": + 3)."""

    op: str  # "+", "-", "*", "/"
    amount: Fraction
    phrase: str


def _value(word: str) -> Fraction:
    word = word.lower()
    return Fraction(1) if word in ("a", "one") else Fraction(WORDS[word]) if word in WORDS else Fraction(word)


def quantities(text: str) -> list[Quantity]:
    """Every number the text states, in order: digits (with ``$``, ``%`` or ``percent`` noted) and number words."""
    out: list[tuple[int, Quantity]] = []
    for m in _NUMBER.finditer(text):
        before, after = text[max(0, m.start() - 2):m.start()], text[m.end():m.end() + 9].lower()
        percent = after.startswith(("%", " %", " percent"))
        money = "$" in before or after.startswith((" dollar", " cent"))
        fraction = text[m.end():m.end() + 1] == "/" or text[max(0, m.start() - 1):m.start()] == "/"
        out.append((m.start(), Quantity(Fraction(m.group().replace(",", "")), percent, money, fraction)))
    for m in _WORD.finditer(text):
        after = text[m.end():m.end() + 9].lower()
        out.append((m.start(), Quantity(_value(m.group()), after.startswith(" percent"),
                                        after.startswith((" dollar", " cent")))))
    return [q for _, q in sorted(out, key=lambda pair: pair[0])]


_RELATIONS: list[tuple[re.Pattern[str], str, Fraction | None]] = [
    (re.compile(rf"\b{_NUM}\s+{_FILL}more\s+{_FAR}than\b"), "+", None),
    (re.compile(rf"\b{_NUM}\s+{_FILL}(?:less|fewer)\s+{_FAR}than\b"), "-", None),
    (re.compile(rf"\b{_NUM}\s+times\b(?!\s+(?:a|an|per|each|every)\b)"), "*", None),  # not "3 times a week"
    (re.compile(r"\b(?:twice|double[sd]?)\b"), "*", Fraction(2)),
    (re.compile(r"\b(?:thrice|triple[sd]?)\b"), "*", Fraction(3)),
    (re.compile(r"\bquadruple[sd]?\b"), "*", Fraction(4)),
    (re.compile(r"(?<!and a )\bhalf\b(?!\s+an?\s+hour)"), "/", Fraction(2)),  # not "2 and a half", "half an hour"
    (re.compile(r"\b(?:a|one)[ -]third\b"), "/", Fraction(3)),
    (re.compile(r"\b(?:a|one)[ -](?:quarter|fourth)\b"), "/", Fraction(4)),
]


def relations(text: str) -> list[Relation]:
    """The relations the text words, each with the operator and amount a solution applies it with."""
    lower, out = text.lower(), []
    for pattern, op, amount in _RELATIONS:
        for m in pattern.finditer(lower):
            value = amount if amount is not None else _value(m.group(1))
            if value > 1 or (op in "+-" and value > 0):
                out.append(Relation(op, value, text[m.start():m.end()]))
    return out


# A conversion factor counts when the problem names both units (or the one that implies it) and does
# not state the factor itself as one of its numbers.
_UNITS: list[tuple[int, str, tuple[str, ...]]] = [
    (60, "minutes per hour", ("minute", "hour")),
    (60, "seconds per minute", ("second", "minute")),
    (100, "cents per dollar", ("cent", "dollar|\\$")),
    (100, "centimeters per meter", ("centimeter|cm", "meter")),
    (12, "a dozen", ("dozen",)),
    (12, "months per year", ("month", "year")),
    (12, "inches per foot", ("inch|inche", "foot|feet")),
    (24, "hours per day", ("hour", "day")),
    (7, "days per week", ("day", "week")),
    (52, "weeks per year", ("week", "year")),
    (30, "days per month", ("day", "month")),
    (365, "days per year", ("day", "year")),
    (1000, "grams per kilogram", ("gram", "kilogram|kg")),
    (1000, "meters per kilometer", ("meter", "kilometer|km")),
    (1000, "milliliters per liter", ("milliliter|ml", "liter")),
    (16, "ounces per pound", ("ounce", "pound")),
    (3, "feet per yard", ("foot|feet", "yard")),
    (4, "quarts per gallon", ("quart", "gallon")),
    (2, "a pair", ("pair",)),
]


def _unit(word: str) -> re.Pattern[str]:
    return re.compile(r"\bdollars?\b|\$" if word == "dollar|\\$" else rf"(?:\b|(?<=\d))(?:{word})s?\b")


_UNIT_WORDS = [(Fraction(factor), name, [_unit(w) for w in words]) for factor, name, words in _UNITS]


def conversions(text: str, stated: set[Fraction] | None = None) -> dict[Fraction, str]:
    """Conversion factors the problem's units imply and its numbers (``stated``, read from ``text``
    when not given) do not state: factor -> what it converts."""
    lower = text.lower()
    stated = stated if stated is not None else {q.value for q in quantities(text)}
    out: dict[Fraction, str] = {}
    for factor, name, patterns in _UNIT_WORDS:
        if factor not in stated and factor not in out and all(p.search(lower) for p in patterns):
            out[factor] = name
    return out


_AMOUNT = re.compile(r"\bhow much\b|\$|dollars?\b|\bcost\b|\bpay\b|\bearn|\bspen[dt]|\bsave|\bprice")


def asks_amount(question: str) -> bool:
    """Whether the question asks for an amount that may be a fraction ("how much"), not a count ("how many")."""
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", question.strip()) if s]
    asked = next((s for s in reversed(sentences) if s.endswith("?")), sentences[-1] if sentences else "")
    return bool(_AMOUNT.search(asked.lower()))


def is_money(text: str, token: Token) -> bool:
    """Whether a number in a solution step is written as money ("$4.50", "4.50 dollars")."""
    before, after = text[max(0, token.start - 2):token.start], text[token.end:token.end + 8].lower()
    return "$" in before or after.startswith((" dollar", " cent", "/h", " per h", " an h"))
