"""Final-answer extraction and comparison for model output. Never raises on model output.

The skeleton handles the numeric answers of arithmetic word problems; symbolic equivalence through
math-verify is the data-layer issue's job and will plug in behind ``answers_match``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_ANSWER_IS = re.compile(r"answer is[:\s]*\$?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)
_HASHES = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*|-?\.\d+")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``: "The answer is N", "#### N", else the last number; None if none."""
    if not isinstance(text, str):
        return None
    for pattern in (_ANSWER_IS, _HASHES):
        matches = pattern.findall(text)
        if matches:
            return matches[-1]
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _to_number(s: str) -> Fraction | None:
    s = s.strip().replace(",", "").rstrip(".").lstrip("$")
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(predicted: str | None, gold: str) -> Verdict:
    """Compare a predicted answer with the gold one as exact numbers (``18.00`` = ``18``)."""
    if predicted is None:
        return Verdict(False, "unparseable: no answer found")
    p, g = _to_number(predicted), _to_number(gold)
    if g is None:
        return Verdict(predicted.strip() == gold.strip(), "string comparison (gold is not a number)")
    if p is None:
        return Verdict(False, f"unparseable: {predicted!r} is not a number")
    return Verdict(p == g, "equal" if p == g else f"{predicted} != {gold}")
