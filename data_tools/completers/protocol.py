"""The completer protocol: given text prefixes, sample continuations; and the pieces every backend shares.

A completer takes ``RolloutRequest``s (a prefix, one seed per sample) and returns, per request, the
sampled continuation strings, or None for a request that failed for good (an HTTP backend after its
retries): the labeller then leaves that request's examples unlabelled, so a rerun retries them.
Seeds come from the caller (derived from example id, step index and sample index), so every rollout
can be reproduced alone. Backends: ``openai``, ``vllm`` and ``simulated`` beside this module, and the
in-process torch one, ``prm.generation.HFCompleter`` (model code, on the model side);
``Sampling`` holds the settings the model-backed ones share.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from data_tools.flags import opt, problems

STOP = ("\n\n", "Question:")  # the few-shot format's ends: a blank line, the next question


@dataclass(frozen=True)
class RolloutRequest:
    prefix: str
    seeds: tuple[int, ...]  # one per sample; len(seeds) samples are drawn
    # The prefix's parts, for backends that do not continue raw text (chat) or that simulate a model.
    prompt: str = ""
    steps: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Completer(Protocol):
    def complete(self, requests: Sequence[RolloutRequest]) -> list[list[str] | None]: ...


@dataclass
class Sampling:
    """Sampling settings shared by the model-backed completers (``prm label`` flags of the same names)."""

    max_new_tokens: int = opt(40, min=1)
    """longest rollout continuation, in tokens"""
    temperature: float = opt(0.5, min=0)
    """sampling temperature of rollouts"""
    top_k: int = opt(50, min=0)
    """sample from the k most likely tokens only (0: the whole vocabulary)"""
    stop: tuple[str, ...] = STOP
    """strings that end a rollout (besides the end of a finished answer line)"""

    def problems(self) -> list[str]:
        return problems(self)


def rollout_seed(example_id: str, step_index: int, sample_index: int, base_seed: int = 0) -> int:
    """A stable 63-bit seed from (example id, step index, sample index): resumable and auditable."""
    key = f"{base_seed}|{example_id}|{step_index}|{sample_index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


_ANSWER_LINE_END = re.compile(r"answer is[^\n]*\n", re.IGNORECASE)


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string, or at the end of a finished answer line.

    Returns (text, stopped). Stopping right after "The answer is N." saves the tokens a model
    would spend on a blank line or a next question.
    """
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    m = _ANSWER_LINE_END.search(text)
    if m:
        cuts.append(m.end() - 1)
    cut = min(cuts, default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
