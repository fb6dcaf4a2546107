"""The BentoML scoring service: ``POST /score`` over a PRM artifact (ONNX preferred, PyTorch fallback).

The artifact folder comes from ``$PRM_MODEL_DIR`` (``prm serve MODEL`` sets it). Heavy imports
happen in ``__init__`` so importing this module stays cheap. Readiness waits for one warm-up
inference. Limits, batching across requests and the other endpoints are the serving issue's work.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bentoml

from serving.schemas import (
    EXAMPLE_ITEMS,
    Aggregate,
    Item,
    OpenRLHFResponse,
    RankResponse,
    Result,
    ScoreResponse,
)

log = logging.getLogger(__name__)


@bentoml.service(traffic={"timeout": 60})
class PRMService:
    def __init__(self) -> None:
        from prm.scoring import ONNX_FILE, Scorer

        folder = Path(os.environ.get("PRM_MODEL_DIR", "prm_model"))
        backend = os.environ.get("PRM_BACKEND") or ("onnx" if (folder / ONNX_FILE).is_file() else "torch")
        self.scorer = Scorer(folder, backend=backend)
        self.scorer.score([(i.prompt, i.steps) for i in EXAMPLE_ITEMS])  # warm-up before /readyz
        self.ready = True
        log.info("PRM service ready: %s (%s backend)", folder, backend)

    @bentoml.api
    def score(self, items: list[Item] = EXAMPLE_ITEMS, aggregate: Aggregate = "min") -> ScoreResponse:
        from prm.scoring import aggregate as combine

        step_scores = self.scorer.score([(i.prompt, i.steps) for i in items])
        return ScoreResponse(results=[Result(step_scores=s, score=combine(s, aggregate)) for s in step_scores])

    @bentoml.api
    def rank(self, prompt: str = EXAMPLE_ITEMS[0].prompt,
             candidates: list[list[str]] = [EXAMPLE_ITEMS[0].steps],  # noqa: B006 (a schema example)
             aggregate: Aggregate = "min") -> RankResponse:
        """Best-of-N over candidate solutions (step lists) of one prompt."""
        from prm.scoring import aggregate as combine

        if not candidates or any(not c for c in candidates):
            raise bentoml.exceptions.InvalidArgument("'candidates' needs at least one candidate, each with "
                                                     "at least one step")
        scores = [combine(s, aggregate) for s in self.scorer.score([(prompt, c) for c in candidates])]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return RankResponse(scores=scores, order=order, best=order[0])

    @bentoml.api
    def openrlhf(self, query: list[str], prompts: list[str] | None = None,
                 labels: list[str] | None = None) -> OpenRLHFResponse:
        """OpenRLHF's remote reward contract: ``query`` is prompt + response; the response is scored.

        Responses are split into steps one per line; a response with no step gets reward 0.
        ``labels`` (reference answers) are accepted and not used: a PRM judges the steps.
        """
        from data_tools.splitting import split_steps
        from prm.scoring import aggregate as combine

        if prompts is not None and len(prompts) != len(query):
            raise bentoml.exceptions.InvalidArgument(f"{len(prompts)} prompts for {len(query)} queries; send "
                                                     "one prompt per query (or none)")
        items, where = [], []
        for i, q in enumerate(query):
            prompt = prompts[i] if prompts is not None else ""
            response = q[len(prompt):] if prompt and q.startswith(prompt) else q
            steps = split_steps(response)
            if steps:
                items.append((prompt, steps))
                where.append(i)
        rewards, n_steps = [0.0] * len(query), [0.0] * len(query)
        for i, (item, step_scores) in zip(where, zip(items, self.scorer.score(items), strict=True), strict=True):
            rewards[i], n_steps[i] = combine(step_scores, "min"), float(len(item[1]))
        return OpenRLHFResponse(rewards=rewards, scores=rewards, extra_logs={"prm_steps": n_steps})

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)
