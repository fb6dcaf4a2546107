"""Splitting a solution text into steps, with explicit strategies and an exact layout.

A step is a substring of the solution, copied as is: nothing inside it is rewritten. The whitespace
that surrounds steps (line breaks, blank lines, indentation before a step) belongs to the
separators, so a step never starts or ends with whitespace and is never empty. ``split_layout``
returns those separators too, and ``join_steps`` puts steps and separators back together into the
original text, byte for byte.

Strategies (``SPLIT_STRATEGIES``):

- ``lines``: one step per non-blank line;
- ``paragraphs``: one step per block of text between blank lines;
- ``headers``: a step starts at each ``Step k:`` header (``Step 1.``, ``**Step 2:**``, ``## Step 3``
  too); text before the first header is a step of its own, never dropped;
- ``regex``: a custom pattern whose matches are the separators (``re.split`` semantics; a
  zero-width pattern such as a lookahead splits before each match).

This module does not decide where a solution ends and its final answer begins; the formats do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

SPLIT_STRATEGIES = ("lines", "paragraphs", "headers", "regex")

_LINES = re.compile(r"\r?\n")
_PARAGRAPHS = re.compile(r"\r?\n[ \t]*\r?\n")
# A header at the start of a line: optional markdown emphasis/heading marks, "Step", a number, and
# ":" or "." or the end of the line. The split happens before the header, which stays in its step.
_HEADERS = re.compile(r"(?im)^(?=[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?step[ \t]+\d+[ \t]*(?:[:.)]|\*\*|__|$))")


@lru_cache(maxsize=32)
def _separator(strategy: str, pattern: str | None) -> re.Pattern[str]:
    if strategy not in SPLIT_STRATEGIES:
        raise ValueError(f"unknown split strategy {strategy!r}; choose one of {', '.join(SPLIT_STRATEGIES)}")
    if strategy == "regex":
        if not pattern:
            raise ValueError("the 'regex' split strategy needs a pattern (the separators), e.g. r'\\n(?=\\d+\\. )'")
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad split pattern {pattern!r}: {exc}") from None
    if pattern:
        raise ValueError(f"a pattern is only used with the 'regex' strategy, not with {strategy!r}")
    return {"lines": _LINES, "paragraphs": _PARAGRAPHS, "headers": _HEADERS}[strategy]


def step_spans(text: str, strategy: str = "lines", pattern: str | None = None) -> list[tuple[int, int]]:
    """(start, end) of every step in ``text``: non-empty, no surrounding whitespace, in order."""
    sep = _separator(strategy, pattern)
    spans, start = [], 0
    for m in sep.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        chunk = text[a:b]
        stripped = chunk.strip()
        if stripped:
            a += len(chunk) - len(chunk.lstrip())
            out.append((a, a + len(stripped)))
    return out


def split_steps(text: str, strategy: str = "lines", pattern: str | None = None) -> list[str]:
    """The steps of ``text`` (see the module docstring for the strategies)."""
    return [text[a:b] for a, b in step_spans(text, strategy, pattern)]


def split_layout(text: str, strategy: str = "lines", pattern: str | None = None) -> tuple[list[str], list[str]]:
    """Steps and the ``len(steps) + 1`` separators around them: before, between, after.

    ``join_steps(steps, separators=separators) == text`` always holds.
    """
    spans = step_spans(text, strategy, pattern)
    steps = [text[a:b] for a, b in spans]
    bounds = [0, *[x for span in spans for x in span], len(text)]
    separators = [text[bounds[i]:bounds[i + 1]] for i in range(0, len(bounds), 2)]
    return steps, separators


def join_steps(steps: Sequence[str], joiner: str = "\n", separators: Sequence[str] | None = None) -> str:
    """Steps joined by ``joiner``, or interleaved with ``separators`` (one more than steps) when given."""
    if separators is None:
        return joiner.join(steps)
    if len(separators) != len(steps) + 1:
        raise ValueError(f"need {len(steps) + 1} separators for {len(steps)} steps, got {len(separators)}")
    parts = [separators[0]]
    for step, sep in zip(steps, separators[1:], strict=True):
        parts += [step, sep]
    return "".join(parts)


def canonical_layout(separators: Sequence[str], joiner: str = "\n") -> bool:
    """Whether ``separators`` are just ``joiner`` between steps, nothing before or after."""
    return separators[0] == "" and separators[-1] == "" and all(s == joiner for s in separators[1:-1])
