"""Search with a PRM over any step generator: ``run_search`` and its strategies, plus the first API.

    result = run_search("beam", prompt, propose, score, budget=8, seed=0)

``propose(prompt, steps_so_far, n)`` returns up to ``n`` next steps (``Proposal`` with its token cost,
or plain strings); ``score(prompt, [steps, ...])`` returns each candidate's step scores
(``client_scorer(PRMClient(url))`` over the service, or any callable). Every strategy works over
steps, is seeded (``random.Random(seed)``; with a deterministic generator the whole run is), and
returns a ``SearchResult``: the chosen steps, its answer and PRM score, generator tokens, PRM calls
and steps scored, and a JSON-able trace.

``budget`` is one integer meaning about "rollouts' worth" of generator tokens, so strategies compare
at equal cost:

| strategy | budget means | PRM |
|---|---|---|
| ``greedy`` | ignored: one rollout | no |
| ``majority_vote`` | N sampled rollouts, most frequent answer | no |
| ``best_of_n`` | N rollouts, best aggregated PRM score | yes |
| ``weighted_vote`` | N rollouts, answer with the highest summed PRM score | yes |
| ``beam`` | beam width x expansions per beam (each depth generates ~budget steps) | yes |
| ``particle_filter`` | particles (each round extends each live one by one step) | yes |
| ``mcts`` | simulations (each adds at most one rollout below the node UCT selects) | yes |

``best_of_n`` and ``beam_search`` (the first API: rerank given candidates, beam search over a client)
are kept as they were. Imports only ``httpx`` (through the client) and the standard library.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from serving.search.beam import beam, beam_shape
from serving.search.core import (
    AGGREGATIONS,
    Proposal,
    Propose,
    ScoreFn,
    SearchResult,
    SearchState,
    aggregate_scores,
    answer_key,
    answer_of,
    client_scorer,
    default_is_final,
    same_answer,
)
from serving.search.legacy import Beam, beam_search, best_of_n
from serving.search.mcts import mcts
from serving.search.particles import particle_filter
from serving.search.sampling import best_of_n as _best_of_n_strategy
from serving.search.sampling import greedy, majority_vote, weighted_vote

STRATEGIES = ("greedy", "majority_vote", "best_of_n", "weighted_vote", "beam", "particle_filter", "mcts")
PRM_GUIDED = ("best_of_n", "weighted_vote", "beam", "particle_filter", "mcts")
_RUN = {"greedy": greedy, "majority_vote": majority_vote, "best_of_n": _best_of_n_strategy,
        "weighted_vote": weighted_vote, "beam": beam, "particle_filter": particle_filter, "mcts": mcts}
_OPTIONS = {"beam": {"beam_width", "expand"}, "particle_filter": {"temperature", "select"},
            "mcts": {"expand", "c"}}


def run_search(strategy: str, prompt: str, propose: Propose, score: ScoreFn | None, budget: int, seed: int = 0,
               aggregate: str = "min", max_steps: int = 12, is_final: Callable[[str], bool] = default_is_final,
               **options) -> SearchResult:
    """Run one strategy (see ``STRATEGIES``; the module docstring says what ``budget`` means for each).

    ``options``: beam (``beam_width``, ``expand``), particle_filter (``temperature``, ``select``),
    mcts (``expand``, ``c``); an option another strategy reads, or an unknown one, is refused.
    """
    if strategy not in _RUN:
        raise ValueError(f"unknown search strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an integer of at least 1, got {budget!r}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    if aggregate not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
    unknown = set(options) - _OPTIONS.get(strategy, set())
    if unknown:
        raise ValueError(f"{strategy} takes no option(s) {sorted(unknown)}; it reads "
                         f"{sorted(_OPTIONS.get(strategy, ())) or 'none'}")
    if strategy in PRM_GUIDED and score is None:
        raise ValueError(f"{strategy} needs a PRM: pass score=client_scorer(PRMClient(url)) or any ScoreFn")
    state = SearchState(prompt=prompt, propose_fn=propose, score_fn=score, rng=random.Random(seed),
                        aggregate=aggregate, max_steps=max_steps, is_final=is_final, options=dict(options))
    return _RUN[strategy](state, budget)


__all__ = ["AGGREGATIONS", "PRM_GUIDED", "STRATEGIES", "Beam", "Proposal", "Propose", "ScoreFn", "SearchResult",
           "aggregate_scores", "answer_key", "answer_of", "beam_search", "beam_shape", "best_of_n", "client_scorer",
           "default_is_final", "run_search", "same_answer"]
