"""Particle filtering over steps (Puri et al. 2025, "A Probabilistic Inference Approach to
Inference-Time Scaling of LLMs using Particle-Based Monte Carlo Methods").

``budget`` particles start empty. Each round every unfinished particle is extended by one sampled
step (one batched ``propose`` call), the extended partial solutions are scored (one PRM call), and a
particle's log-weight becomes the logit of its latest step's PRM score, as in the paper and its
reference implementation (its_hub). All particles, finished ones with their last weight included,
are then resampled with replacement in proportion to ``softmax(log_weight / temperature)``
(multinomial, drawn from the run's seeded ``random.Random``): a copy of a finished particle stays
finished, so finished solutions are kept while they weigh enough. The rounds stop when every
particle has finished (or reached ``max_steps``); the answer is the finished particle of highest
weight (option ``select="weighted_vote"``: the answer whose particles' weights sum highest).

Options: ``temperature`` (1.0), ``select`` ("argmax" or "weighted_vote"). Each round generates one
step per live particle, so the search costs about ``budget`` rollouts' worth of tokens.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from serving.search.core import SearchResult, SearchState, answer_key, answer_of

_EPS = 1e-7


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def softmax(xs: list[float], temperature: float = 1.0) -> list[float]:
    scaled = [x / temperature for x in xs]
    top = max(scaled)
    exps = [math.exp(x - top) for x in scaled]
    total = sum(exps)
    return [e / total for e in exps]


@dataclass
class Particle:
    steps: list[str] = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    log_weight: float = 0.0
    finished: bool = False
    id: int = 0

    def copy(self, new_id: int) -> Particle:
        return Particle(list(self.steps), list(self.step_scores), self.log_weight, self.finished, new_id)


def particle_filter(state: SearchState, budget: int) -> SearchResult:
    temperature = float(state.options.get("temperature", 1.0))
    select = state.options.get("select", "argmax")
    if temperature <= 0:
        raise ValueError(f"particle_filter's temperature must be above 0, got {temperature}")
    if select not in ("argmax", "weighted_vote"):
        raise ValueError(f"particle_filter's select must be 'argmax' or 'weighted_vote', got {select!r}")
    particles = [Particle(id=i) for i in range(budget)]
    next_id = budget
    state.event("start", strategy="particle_filter", particles=budget, temperature=temperature)
    for round_ in range(state.max_steps):
        live = [p for p in particles if not p.finished]
        if not live:
            break
        got = state.propose_many([(p.steps, 1) for p in live])
        extended = []
        for p, proposals in zip(live, got, strict=True):
            if proposals and proposals[0].text:
                p.steps.append(proposals[0].text)
                extended.append(p)
            else:  # the generator gave nothing: this particle cannot go on
                p.finished = True
        if extended:
            for p, scores in zip(extended, state.score([p.steps for p in extended]), strict=True):
                p.step_scores = scores
                p.log_weight = logit(scores[-1])
                p.finished = state.is_final(p.steps[-1]) or len(p.steps) >= state.max_steps
        probs = softmax([p.log_weight for p in particles], temperature)
        drawn = state.rng.choices(range(len(particles)), weights=probs, k=budget)
        state.event("resample", round=round_, ids=[p.id for p in particles], weights=[round(w, 6) for w in probs],
                    steps=[list(p.steps) for p in particles], drawn=[particles[i].id for i in drawn])
        copies: dict[int, int] = {}
        resampled = []
        for i in drawn:
            if copies.get(i, 0) == 0:
                resampled.append(particles[i])  # the first draw keeps the particle itself
            else:
                resampled.append(particles[i].copy(next_id))
                next_id += 1
            copies[i] = copies.get(i, 0) + 1
        particles = resampled
    finished = [p for p in particles if p.finished and p.steps] or [p for p in particles if p.steps]
    if not finished:
        return state.result([], None, "particle_filter", budget)
    if select == "weighted_vote":
        weight: dict[str | None, float] = defaultdict(float)
        for p in finished:
            weight[answer_key(answer_of(p.steps))] += math.exp(p.log_weight / temperature)
        voted = {k: w for k, w in weight.items() if k is not None}
        if voted:
            winner = max(voted, key=lambda k: voted[k])
            finished = [p for p in finished if answer_key(answer_of(p.steps)) == winner]
    best = max(finished, key=lambda p: p.log_weight)
    return state.result(best.steps, state.agg(best.step_scores), "particle_filter", budget)
