"""What every search strategy shares: the generator and scorer contracts, the result, and the run state.

A strategy sees the generator as ``propose(prompt, steps_so_far, n) -> up to n next steps`` (each a
``Proposal`` with the completion tokens it cost, or a plain string that cost an unknown 0 tokens)
and the PRM as ``score(prompt, [steps, ...]) -> [step_scores, ...]`` (``client_scorer`` builds one
over the service, one request per call). ``SearchState`` wraps both for one run: it counts
generator tokens, PRM calls and scored steps, keeps the trace (JSON-able events), aggregates step
scores and reads final answers.

A ``propose`` callable may also carry a ``batch(prompt, [(steps, n), ...]) -> [[Proposal | str, ...],
...]`` attribute: strategies that extend several prefixes at once (beams, particles, parallel
rollouts) then send them in one call, which is what makes an in-process generator fast; without it
they call ``propose`` once per prefix, in order. Standard library and ``data_tools.answers`` (whose
extraction is standard library) only: no torch, no ``prm``.

Not promised: deduplication beyond identical step texts, or that a generator honours ``n`` (fewer
proposals are taken as they come, more are cut to ``n``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from data_tools.answers import extract_answer, normalize, to_number

AGGREGATIONS = ("min", "last", "prod", "mean")  # as the service's (prm.config.AGGREGATIONS)
_FINAL = re.compile(r"answer is|\\boxed|####", re.IGNORECASE)


def default_is_final(step: str) -> bool:
    """A step ends the solution when it states the answer ("the answer is", ``\\boxed``, ``####``)."""
    return bool(_FINAL.search(step))


@dataclass
class Proposal:
    """One generated next step."""

    text: str
    tokens: int = 0
    """generator tokens it cost (completion tokens); 0 when the generator does not say"""


Propose = Callable[[str, list[str], int], Sequence[Proposal | str]]
ScoreFn = Callable[[str, list[list[str]]], list[list[float]]]


def client_scorer(client, aggregate: str = "min") -> ScoreFn:
    """A ``ScoreFn`` over a ``PRMClient`` (the service): one ``/score`` request per call (the client
    splits it into batches of its ``batch_size``). ``aggregate`` only fills the request's field: the
    strategies aggregate the returned step scores themselves."""

    def score(prompt: str, candidates: list[list[str]]) -> list[list[float]]:
        if not candidates:
            return []
        results = client.score([{"prompt": prompt, "steps": list(c)} for c in candidates], aggregate=aggregate)
        return [list(r["step_scores"]) for r in results]

    return score


def aggregate_scores(step_scores: Sequence[float], how: str = "min") -> float:
    """A solution score from its step scores, as the service aggregates them (min, last, prod, mean)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {how!r}")
    if not step_scores:
        raise ValueError("cannot aggregate an empty list of step scores")
    if how == "min":
        return float(min(step_scores))
    if how == "last":
        return float(step_scores[-1])
    if how == "prod":
        return float(math.prod(step_scores))
    return float(sum(step_scores) / len(step_scores))


def answer_of(steps: Sequence[str]) -> str | None:
    """The final answer a solution states (its last step first), or None; never raises."""
    for step in reversed(steps):
        found = extract_answer(step, order=("hashes", "boxed", "answer_is"))
        if found:
            return found
    return None


def answer_key(answer: str | None) -> str | None:
    """What two equal answers share: the exact value of a plain number (``6``, ``6.0``, ``$6``, ``12/2``
    give ``6``), else the normalised text. Standard library only (no math-verify), so voting stays cheap
    and works in a ``[client]``-only install; symbolic equivalence is not promised."""
    if answer is None:
        return None
    value = to_number(answer)
    if value is not None:
        return str(value) if value.denominator != 1 else str(value.numerator)
    text = normalize(answer)
    return text or None


def same_answer(a: str | None, b: str | None) -> bool:
    return a is not None and answer_key(a) == answer_key(b)


@dataclass
class SearchResult:
    steps: list[str]
    answer: str | None
    score: float | None
    """the chosen solution's aggregated PRM score (None when the strategy used no PRM)"""
    generator_tokens: int
    prm_calls: int
    prm_steps_scored: int
    """steps sent to the PRM over the run (prefixes re-sent are counted again)"""
    trace: list[dict] = field(default_factory=list)
    """JSON-able events in order: propose, score, select, resample, expand, backtrack, finish"""
    strategy: str = ""
    budget: int = 0
    finished: bool = False
    """the chosen solution ends with a final step (``is_final``)"""

    def to_json(self) -> dict:
        return {"strategy": self.strategy, "budget": self.budget, "steps": self.steps, "answer": self.answer,
                "score": self.score, "finished": self.finished, "generator_tokens": self.generator_tokens,
                "prm_calls": self.prm_calls, "prm_steps_scored": self.prm_steps_scored, "trace": self.trace}


@dataclass
class SearchState:
    """One run of one strategy: the callables, the settings, the counters and the trace."""

    prompt: str
    propose_fn: Propose
    score_fn: ScoreFn | None
    rng: random.Random
    aggregate: str = "min"
    max_steps: int = 12
    is_final: Callable[[str], bool] = default_is_final
    options: dict[str, Any] = field(default_factory=dict)
    generator_tokens: int = 0
    prm_calls: int = 0
    prm_steps_scored: int = 0
    trace: list[dict] = field(default_factory=list)

    def event(self, kind: str, **fields) -> None:
        self.trace.append({"event": kind, **fields})

    def propose_many(self, requests: Sequence[tuple[list[str], int]]) -> list[list[Proposal]]:
        """Next steps for each (steps so far, n): one batched call when ``propose`` has ``batch``."""
        requests = [(list(steps), n) for steps, n in requests if n > 0]
        if not requests:
            return []
        batch = getattr(self.propose_fn, "batch", None)
        if batch is not None:
            raw = list(batch(self.prompt, requests))
        else:
            raw = [self.propose_fn(self.prompt, list(steps), n) for steps, n in requests]
        out = []
        for (steps, n), got in zip(requests, raw, strict=True):
            proposals = [p if isinstance(p, Proposal) else Proposal(str(p)) for p in list(got)[:n]]
            self.generator_tokens += sum(int(p.tokens) for p in proposals)
            for p in proposals:
                p.text = p.text.strip()
            self.event("propose", depth=len(steps), prefix=list(steps), proposals=[p.text for p in proposals],
                       tokens=[p.tokens for p in proposals])
            out.append(proposals)
        return out

    def score(self, candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        """Step scores of each candidate (a list of steps) in one ``score`` call."""
        candidates = [list(c) for c in candidates]
        if not candidates:
            return []
        if self.score_fn is None:
            raise ValueError("this strategy needs a PRM: pass score=client_scorer(PRMClient(...)) or any ScoreFn")
        scores = [list(map(float, s)) for s in self.score_fn(self.prompt, candidates)]
        if len(scores) != len(candidates) or any(len(s) != len(c) for s, c in zip(scores, candidates, strict=False)):
            raise ValueError(f"score returned {[len(s) for s in scores]} step scores for candidates of "
                             f"{[len(c) for c in candidates]} steps: one list per candidate, one score per step")
        self.prm_calls += 1
        self.prm_steps_scored += sum(len(c) for c in candidates)
        self.event("score", candidates=len(candidates), steps=sum(len(c) for c in candidates),
                   scores=[[round(x, 6) for x in s] for s in scores])
        return scores

    def agg(self, step_scores: Sequence[float]) -> float:
        return aggregate_scores(step_scores, self.aggregate)

    def rollouts(self, starts: Sequence[list[str]]) -> list[list[str]]:
        """Complete each start one step at a time (n=1 per step, all unfinished ones per batched call)
        until its last step is final or it has ``max_steps`` steps; a generator that proposes nothing
        ends that rollout where it is."""
        paths = [list(s) for s in starts]
        live = [i for i, p in enumerate(paths) if not self.done(p)]
        while live:
            got = self.propose_many([(paths[i], 1) for i in live])
            still = []
            for i, proposals in zip(live, got, strict=True):
                step = proposals[0].text if proposals and proposals[0].text else None
                if step is None:
                    continue
                paths[i].append(step)
                if not self.done(paths[i]):
                    still.append(i)
            live = still
        return paths

    def done(self, steps: Sequence[str]) -> bool:
        return bool(steps) and (self.is_final(steps[-1]) or len(steps) >= self.max_steps)

    def result(self, steps: Sequence[str], score: float | None, strategy: str, budget: int) -> SearchResult:
        steps = list(steps)
        answer = answer_of(steps)
        finished = bool(steps) and self.is_final(steps[-1])
        self.event("finish", steps=len(steps), answer=answer, score=score)
        return SearchResult(steps=steps, answer=answer, score=score, generator_tokens=self.generator_tokens,
                            prm_calls=self.prm_calls, prm_steps_scored=self.prm_steps_scored, trace=self.trace,
                            strategy=strategy, budget=budget, finished=finished)

