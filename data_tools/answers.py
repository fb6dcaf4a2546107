"""Final answers: extracting them from model output and deciding whether two of them match.

``extract_answer`` finds the final answer in a text (``####``, ``\\boxed{}``, "The answer is", the
last number, in that order by default; the order is configurable). ``answers_match`` compares a predicted answer with the
gold one and returns a ``Verdict`` with ``.correct`` and ``.reason``. Plain numbers (integers,
decimals, ``a/b``, ``\\frac{a}{b}``, with ``$``, thousands commas or trailing zeros) are compared
exactly as fractions, without touching sympy, because the labeller calls this once per rollout.
Everything else goes to math-verify for symbolic equivalence, under a timeout that also works
outside the main thread.

Neither function raises on model output, whatever the string: a verdict says what went wrong
(reasons starting with ``unparseable`` mean no answer could be read from the prediction). What is
not promised: equivalence beyond what math-verify decides, units, or multiple-choice letters.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

# Most explicit first: "#### N" only ever marks a final answer, "answer is" also opens sentences
# such as "the final answer is 15 gallons * 8 pints = 120 pints".
EXTRACTORS = ("hashes", "boxed", "answer_is", "last_number")
DEFAULT_TIMEOUT_S = 5.0

_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_NUMBER = re.compile(rf"(?:{_NUM})(?:/\d+)?")
_ANSWER_IS = re.compile(r"answer\s+is\s*(?:(?:therefore|thus|then|simply|just|exactly|equal\s+to)\s+)?[:：]?[ \t]*",
                        re.IGNORECASE)
_LEADING_NUMBER = re.compile(rf"(?:\\?\$)?[ \t]*({_NUM})(?![\d/^_])")
_HASHES = re.compile(r"####[ \t]*")
_INLINE_MATH = re.compile(r"\$([^$]+)\$|\\\((.+?)\\\)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str


def _braced(text: str, start: int) -> str | None:
    """The content of the balanced ``{...}`` group that opens at ``text[start]``."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return None


def _boxed(text: str) -> str | None:
    for m in reversed(list(_BOXED.finditer(text))):
        inner = _braced(text, m.end())
        if inner is not None and inner.strip():
            return inner.strip()
    return None


def _after_marker(text: str, marker: re.Pattern[str]) -> str | None:
    """What follows the last ``marker``: a number if one comes first, else inline math, else the line."""
    matches = list(marker.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    num = _LEADING_NUMBER.match(rest)
    if num:
        return num.group(1)
    line = rest.split("\n", 1)[0].strip()
    math_span = _INLINE_MATH.match(line)
    if math_span:
        return (math_span.group(1) or math_span.group(2)).strip() or None
    if line.startswith("\\boxed") or line.startswith("\\fbox"):
        return _boxed(line)
    # A sentence ends at ". " or a final ".", but "3.5" keeps its point.
    line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0].strip()
    return line or None


def _last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


_EXTRACT = {
    "boxed": _boxed,
    "answer_is": lambda t: _after_marker(t, _ANSWER_IS),
    "hashes": lambda t: _after_marker(t, _HASHES),
    "last_number": _last_number,
}


def extract_answer(text: str, order: Sequence[str] = EXTRACTORS) -> str | None:
    """The final answer in ``text``, by the first extractor in ``order`` that finds one; None if none.

    Extractors: ``hashes`` (after the last ``####``), ``boxed`` (the last ``\\boxed{...}``), ``answer_is``
    (after the last "answer is"), ``last_number``. An unknown name raises ValueError (that
    is a configuration mistake, not model output).
    """
    unknown = [name for name in order if name not in _EXTRACT]
    if unknown:
        raise ValueError(f"unknown answer extractor(s) {unknown}; choose from {', '.join(EXTRACTORS)}")
    if not isinstance(text, str):
        return None
    for name in order:
        found = _EXTRACT[name](text)
        if found:
            return found
    return None


# --- normalisation and the exact numeric path -------------------------------------------------

_WRAPPERS = re.compile(r"^\$+(.*?)\$+$|^\\\((.*)\\\)$|^\\\[(.*)\\\]$", re.DOTALL)
_SPACING = re.compile(r"\\[!,;: ]|\\(?:quad|qquad)\b")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_PLAIN = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+(?:\.\d*)?)?$")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\s*(?:\{\s*(-?\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))$")


def normalize(answer: str) -> str:
    """Strip what never changes a value: math delimiters, ``\\boxed``, ``$``, spacing, a final period."""
    s = answer.strip()
    for _ in range(3):  # nested wrappers such as $\boxed{...}$
        m = _WRAPPERS.match(s)
        if m:
            s = next(g for g in m.groups() if g is not None).strip()
        if s.startswith(("\\boxed", "\\fbox")):
            inner = _boxed(s)
            if inner is not None:
                s = inner
    s = _SPACING.sub("", s).replace("\\$", "").replace("$", "").strip()
    s = s.rstrip(".").strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    return s


def to_number(answer: str) -> Fraction | None:
    """The exact value of a plain number (``18.00``, ``1,000``, ``$18``, ``1/2``, ``\\frac{1}{2}``)."""
    s = normalize(answer)
    try:
        if _PLAIN.match(s):
            if "/" in s:
                num, den = s.split("/")
                return Fraction(num) / Fraction(den)
            return Fraction(s)
        m = _FRAC.match(s)
        if m:
            sign, num, den = m.group(1), m.group(2) or m.group(3), m.group(4) or m.group(5)
            value = Fraction(int(num), int(den))
            return -value if sign else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


# --- math-verify ----------------------------------------------------------------------------------

class _NoTimeoutWarning(logging.Filter):
    """math-verify warns when its signal timeout is off; off-main-thread calls bring their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


@lru_cache(maxsize=1)
def _math_verify():
    import math_verify  # heavy (sympy): imported on the first answer that is not a plain number

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_NoTimeoutWarning())
    return math_verify


def _as_latex(answer: str) -> str:
    s = normalize(answer)
    return f"${s}$" if s else s


def _symbolic(predicted: str, gold: str, timeout: int | None) -> Verdict:
    """math-verify's verdict. ``timeout`` (whole seconds) uses its SIGALRM timer; None disables it."""
    mv = _math_verify()
    # parse() falls back to the raw matched string when sympy cannot read it: that is no value.
    gold_parsed = mv.parse(_as_latex(gold), parsing_timeout=timeout, raise_on_error=True)
    if all(isinstance(x, str) for x in gold_parsed):
        same = normalize(predicted) == normalize(gold)
        return Verdict(same, "string comparison (math-verify cannot parse the gold answer)")
    pred_parsed = mv.parse(_as_latex(predicted), parsing_timeout=timeout, raise_on_error=True)
    if all(isinstance(x, str) for x in pred_parsed):
        return Verdict(False, f"unparseable: math-verify found no answer in {predicted!r}")
    ok = mv.verify(gold_parsed, pred_parsed, timeout_seconds=timeout, raise_on_error=True)
    return Verdict(bool(ok), "equivalent (math-verify)" if ok else f"not equivalent: {predicted} vs {gold}")


def _symbolic_guarded(predicted: str, gold: str, timeout_s: float) -> Verdict:
    """``_symbolic`` under a timeout, turning every failure into a verdict.

    In the main thread math-verify's own SIGALRM timer interrupts a runaway sympy call. Signals only
    work there, so elsewhere the comparison runs in a daemon thread that we stop waiting for after
    ``timeout_s``; a runaway computation then finishes (or not) in the background, never blocking us.
    """
    if threading.current_thread() is threading.main_thread():
        try:
            return _symbolic(predicted, gold, max(1, math.ceil(timeout_s)))
        except BaseException as exc:  # math-verify's TimeoutException is a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return _failure(exc, timeout_s)
    box: list[Verdict] = []

    def work() -> None:
        try:
            box.append(_symbolic(predicted, gold, None))
        except BaseException as exc:  # noqa: BLE001 - any failure of model output becomes a verdict
            box.append(_failure(exc, timeout_s))

    worker = threading.Thread(target=work, name="answers_match", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return box[0] if box else Verdict(False, f"timeout: no verdict within {timeout_s:g} s")


def _failure(exc: BaseException, timeout_s: float) -> Verdict:
    if type(exc).__name__ == "TimeoutException":
        return Verdict(False, f"timeout: no verdict within {timeout_s:g} s")
    return Verdict(False, f"error: math-verify failed ({type(exc).__name__})")


def answers_match(predicted: str | None, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Whether ``predicted`` is the ``gold`` answer: exact for plain numbers, else via math-verify.

    ``1`` vs ``12`` never match; ``0.5``, ``1/2`` and ``\\frac{1}{2}`` do, and so do ``1,000`` and
    ``1000``, ``$18`` and ``18``, ``18.00`` and ``18``. Never raises on ``predicted``.
    """
    if predicted is None:
        return Verdict(False, "unparseable: no answer found")
    if not isinstance(predicted, str):
        return Verdict(False, f"unparseable: expected a string, got {type(predicted).__name__}")
    gold = str(gold)
    if not predicted.strip():
        return Verdict(False, "unparseable: empty answer")
    p, g = to_number(predicted), to_number(gold)
    if p is not None and g is not None:
        return Verdict(p == g, "equal" if p == g else f"{predicted.strip()} != {gold.strip()}")
    return _symbolic_guarded(predicted, gold, timeout_s)
