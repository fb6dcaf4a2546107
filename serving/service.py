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

from serving.schemas import EXAMPLE_ITEMS, Aggregate, Item, Result, ScoreResponse

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

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)
