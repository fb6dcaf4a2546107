"""Step-level beam search over a ``SearchState``: expand, score the children, keep the best.

``budget`` = beam width x expansions per beam (options ``beam_width`` and ``expand``; given only the
budget, the width is its largest divisor not above its square root: 4 -> 2 x 2, 8 -> 2 x 4,
16 -> 4 x 4). The root is expanded ``budget`` times, every live beam ``expand`` times per depth, so
each depth generates about ``budget`` steps and the whole search about ``budget`` rollouts' worth.
Children are scored in one PRM call per depth and ranked by their aggregated step scores; a child
whose last step is final retires into the finished pool, the best ``beam_width`` others live on. The
search stops when ``beam_width`` solutions have finished, nothing is live, or ``max_steps`` is
reached; it returns the best finished solution (or the best live one when none finished).
"""

from __future__ import annotations

import math

from serving.search.core import SearchResult, SearchState


def beam_shape(budget: int, beam_width: int | None = None, expand: int | None = None) -> tuple[int, int]:
    """(beam_width, expand) for a budget, either given or derived (see the module docstring)."""
    if beam_width and expand:
        return beam_width, expand
    if beam_width:
        return beam_width, max(1, budget // beam_width)
    if expand:
        return max(1, budget // expand), expand
    width = max(d for d in range(1, math.isqrt(max(budget, 1)) + 1) if budget % d == 0)
    return width, max(1, budget // width)


def beam(state: SearchState, budget: int) -> SearchResult:
    width, expand = beam_shape(budget, state.options.get("beam_width"), state.options.get("expand"))
    state.event("start", strategy="beam", beam_width=width, expand=expand)
    live: list[tuple[list[str], float]] = [([], 0.0)]
    done: list[tuple[list[str], float]] = []
    first = True
    while live and len(done) < width:
        got = state.propose_many([(steps, budget if first else expand) for steps, _ in live])
        first = False
        children: list[list[str]] = []
        for (steps, _), proposals in zip(live, got, strict=True):
            seen = set()
            for p in proposals:
                if p.text and p.text not in seen:
                    seen.add(p.text)
                    children.append(steps + [p.text])
        if not children:
            break
        scores = [state.agg(s) for s in state.score(children)]
        order = sorted(range(len(children)), key=lambda i: -scores[i])  # stable: ties keep proposal order
        finished = [i for i in order if state.is_final(children[i][-1])]
        done.extend((children[i], scores[i]) for i in finished)
        ongoing = [i for i in order if i not in finished and len(children[i]) < state.max_steps]
        capped = [i for i in order if i not in finished and len(children[i]) >= state.max_steps]
        kept, pruned = ongoing[:width], ongoing[width:] + capped
        state.event("select", depth=len(children[0]), kept=[children[i] for i in kept],
                    kept_scores=[round(scores[i], 6) for i in kept], finished=[children[i] for i in finished],
                    pruned=[children[i] for i in pruned])
        live = [(children[i], scores[i]) for i in kept]
        if not live and not done and capped:
            done = [(children[i], scores[i]) for i in capped[:1]]
    pool = done or live
    if not pool:
        return state.result([], None, "beam", budget)
    steps, score = max(pool, key=lambda b: b[1])
    return state.result(steps, score, "beam", budget)
