"""A seeded stand-in for a model: rollouts whose chance of reaching the gold answer is set by the data.

``SimulatedCompleter`` reads each request's ``meta`` (the example the prefix came from): a prefix
that ends before ``meta["first_error"]`` (or any prefix when it is -1 or absent) reaches the gold
answer with probability ``p_correct``, a prefix that contains the first error with ``p_wrong``; a
fraction ``p_unparseable`` of rollouts says nothing a checker can read. Every rollout is drawn from
its own seed alone, so results never depend on batching, and labellers can be compared (binary
search against Monte-Carlo) or timed without a model. ``latency_s`` makes each ``complete`` call
take that long, for tests that need a run to be interruptible.

It owns no notion of steps or answers beyond writing "The answer is N."; what is not promised is
any resemblance to a real model's texts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from data_tools.completers.protocol import RolloutRequest
from data_tools.flags import opt, problems


@dataclass
class SimulatedConfig:
    """The simulated completer's behaviour (``prm label --completer simulated`` flags, prefixed ``--sim-``)."""

    p_correct: float = opt(0.8, min=0, max=1)
    """chance that a rollout from a prefix before the first error reaches the gold answer"""
    p_wrong: float = opt(0.02, min=0, max=1)
    """chance that a rollout from a prefix containing the first error still reaches the gold answer"""
    p_unparseable: float = opt(0.02, min=0, max=1)
    """chance that a rollout ends without a readable answer"""
    latency_s: float = opt(0.0, min=0)
    """seconds each batch of requests takes (to make runs slow enough to interrupt)"""

    def problems(self) -> list[str]:
        return problems(self, prefix="sim-")


@dataclass
class SimulatedCompleter:
    config: SimulatedConfig
    answer_key: str = "answer"

    def complete(self, requests: Sequence[RolloutRequest]) -> list[list[str]]:
        if self.config.latency_s:
            time.sleep(self.config.latency_s)
        return [[self._rollout(r, seed) for seed in r.seeds] for r in requests]

    def _rollout(self, request: RolloutRequest, seed: int) -> str:
        rng = random.Random(seed)
        gold = str(request.meta.get(self.answer_key, ""))
        first = request.meta.get("first_error", -1)
        first = -1 if first is None else int(first)
        on_track = first < 0 or len(request.steps) - 1 < first  # the prefix's last step comes before the error
        if rng.random() < self.config.p_unparseable:
            return "I am not sure how to go on."
        if rng.random() < (self.config.p_correct if on_track else self.config.p_wrong):
            return f"The answer is {gold}."
        return f"The answer is {_wrong(gold, rng)}."


def _wrong(gold: str, rng: random.Random) -> str:
    """An answer that does not match ``gold``: a number off by 1-9, or the gold one plus one."""
    try:
        return str(Fraction(gold) + rng.randint(1, 9) * rng.choice((-1, 1)))
    except (ValueError, ZeroDivisionError):
        return f"({gold}) + 1"
