"""The first search API, kept as it was: ``best_of_n`` reranking and ``beam_search`` over a ``PRMClient``.

``serving.search.run_search`` is the newer entry point (every strategy, token and PRM accounting, a
trace); these two stay for the code that calls them.

The generator is any callable, so the same search runs over vLLM, an OpenAI-compatible endpoint, a
local transformers model or a scripted test double:

    propose(prompt, steps_so_far, n) -> list[str]     # up to n candidate next steps

Beam search keeps the ``beam_width`` partial solutions with the best PRM score (step scores
aggregated as asked, ``min`` by default: a beam is as good as its weakest step), extends each by
``expand`` proposals, and retires a beam once ``is_final`` says its last step ends the solution (by
default: it states "the answer is"). Scores come from the service in batches, one request per
depth. Imports neither torch nor ``prm``.

Not promised: deduplication of proposals beyond identical step texts, or any token budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from serving.client import PRMClient
from serving.search.core import Proposal, default_is_final


@dataclass
class Beam:
    steps: list[str]
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0
    final: bool = False


def best_of_n(client: PRMClient, prompt: str, candidates: Sequence[Sequence[str]],
              aggregate: str = "min") -> tuple[int, list[float]]:
    """Index of the best candidate (a list of steps) and every candidate's solution score."""
    if not candidates:
        raise ValueError("best_of_n needs at least one candidate")
    ranked = client.rank(prompt, candidates, aggregate=aggregate)
    return ranked["best"], ranked["scores"]


def beam_search(client: PRMClient, prompt: str, propose: Callable[[str, list[str], int], list[str]],
                beam_width: int = 4, expand: int = 4, max_steps: int = 12, aggregate: str = "min",
                is_final: Callable[[str], bool] = default_is_final) -> list[Beam]:
    """Finished beams (or the live ones when ``max_steps`` runs out), best first."""
    if beam_width < 1 or expand < 1 or max_steps < 1:
        raise ValueError(f"beam_width, expand and max_steps must be at least 1, got {beam_width}, {expand}, {max_steps}")
    live, done = [Beam(steps=[])], []
    for _ in range(max_steps):
        children = []
        for beam in live:
            seen = set()
            for step in list(propose(prompt, list(beam.steps), expand))[:expand]:
                step = step.text if isinstance(step, Proposal) else step
                if step.strip() and step not in seen:
                    seen.add(step)
                    children.append(Beam(steps=beam.steps + [step]))
        if not children:
            break
        results = client.score([{"prompt": prompt, "steps": c.steps} for c in children], aggregate=aggregate)
        for child, result in zip(children, results, strict=True):
            child.step_scores, child.score = result["step_scores"], result["score"]
            child.final = is_final(child.steps[-1])
        children.sort(key=lambda b: -b.score)
        done.extend(b for b in children if b.final)
        live = [b for b in children if not b.final][:beam_width]
        if not live or len(done) >= beam_width:
            break
    return sorted(done or live, key=lambda b: -b.score)
