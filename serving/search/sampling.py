"""Strategies over whole sampled solutions: greedy, majority vote, best-of-N and PRM-weighted vote.

Each draws ``budget`` complete rollouts (greedy: one), one step at a time and all rollouts per
batched ``propose`` call, then chooses:

- ``greedy``: the one rollout (greedy decoding when the generator samples at temperature 0).
- ``majority_vote``: the most frequent final answer (self-consistency; no PRM). Ties go to the
  answer reached first.
- ``best_of_n``: the rollout with the best aggregated PRM score (finished ones with an answer first).
- ``weighted_vote``: the answer whose rollouts' aggregated PRM scores sum highest, returned as its
  best-scored rollout (PRM-weighted majority vote).

Rollouts without an answer never vote. Standard library only.
"""

from __future__ import annotations

from collections import defaultdict

from serving.search.core import SearchResult, SearchState, answer_key, answer_of


def greedy(state: SearchState, budget: int) -> SearchResult:
    (path,) = state.rollouts([[]])
    state.event("select", strategy="greedy", index=0)
    return state.result(path, None, "greedy", budget)


def _answers(state: SearchState, paths: list[list[str]]) -> list[str | None]:
    """Each rollout's vote: its answer's key when it finished with one, else None."""
    return [answer_key(answer_of(p)) if p and state.is_final(p[-1]) else None for p in paths]


def majority_vote(state: SearchState, budget: int) -> SearchResult:
    paths = state.rollouts([[] for _ in range(budget)])
    keys = _answers(state, paths)
    counts: dict[str, int] = {}
    for k in keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    if not counts:
        state.event("select", strategy="majority_vote", votes={}, index=0)
        return state.result(paths[0], None, "majority_vote", budget)
    top = max(counts.values())
    winner = next(k for k in keys if k is not None and counts[k] == top)  # first reached among the tied
    index = keys.index(winner)
    state.event("select", strategy="majority_vote", votes=counts, answer=winner, index=index)
    return state.result(paths[index], None, "majority_vote", budget)


def _scored(state: SearchState, budget: int) -> tuple[list[list[str]], list[float]]:
    paths = state.rollouts([[] for _ in range(budget)])
    nonempty = [i for i, p in enumerate(paths) if p]
    scores = [float("-inf")] * len(paths)
    for i, s in zip(nonempty, state.score([paths[i] for i in nonempty]), strict=True):
        scores[i] = state.agg(s)
    return paths, scores


def best_of_n(state: SearchState, budget: int) -> SearchResult:
    paths, scores = _scored(state, budget)
    keys = _answers(state, paths)
    # Finished solutions with an answer rank above the rest; then the PRM decides; ties: the first.
    index = max(range(len(paths)), key=lambda i: (keys[i] is not None, scores[i], -i))
    state.event("select", strategy="best_of_n", scores=[round(s, 6) for s in scores], index=index)
    return state.result(paths[index], _finite(scores[index]), "best_of_n", budget)


def weighted_vote(state: SearchState, budget: int) -> SearchResult:
    paths, scores = _scored(state, budget)
    keys = _answers(state, paths)
    weight: dict[str, float] = defaultdict(float)
    for k, s in zip(keys, scores, strict=True):
        if k is not None:
            weight[k] += max(s, 0.0)
    if not weight:
        index = max(range(len(paths)), key=lambda i: (scores[i], -i))
        state.event("select", strategy="weighted_vote", weights={}, index=index)
        return state.result(paths[index], _finite(scores[index]), "weighted_vote", budget)
    top = max(weight.values())
    winner = next(k for k in keys if k is not None and weight[k] == top)
    index = max((i for i, k in enumerate(keys) if k == winner), key=lambda i: (scores[i], -i))
    state.event("select", strategy="weighted_vote", weights={k: round(v, 6) for k, v in weight.items()},
                answer=winner, index=index)
    return state.result(paths[index], _finite(scores[index]), "weighted_vote", budget)


def _finite(x: float) -> float | None:
    return None if x == float("-inf") else x
