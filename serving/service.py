"""The BentoML scoring service over a PRM artifact (ONNX preferred, PyTorch fallback).

Endpoints: ``POST /score`` (step scores and a solution score per item), ``POST /rank`` (best-of-N
over candidates of one prompt), ``POST /openrlhf`` (OpenRLHF's remote reward contract); BentoML's
``/livez``, ``/readyz`` (after one warm-up inference) and ``/metrics``.

The artifact folder comes from ``$PRM_MODEL_DIR`` (``prm serve MODEL`` sets it). Heavy imports
happen in ``__init__`` so importing this module stays cheap. Bad input never gets a 5xx: malformed
bodies are answered by ``serving.guard`` (400/401/413), wrong fields by BentoML's validation (400),
and the limits below by 413. Limits (environment, read at start-up): ``PRM_MAX_ITEMS`` solutions
per request (256), ``PRM_MAX_STEPS`` steps per solution (128), tokens per solution = the artifact's
``max_length``, ``PRM_MAX_BODY_BYTES`` (4 MiB), ``PRM_MAX_CONCURRENCY`` requests in flight before
429 (64), and ``PRM_API_TOKEN`` for bearer-token auth. Prompts and steps are never logged.
"""

from __future__ import annotations

import logging
import os
from http import HTTPStatus
from pathlib import Path

import bentoml

from serving.guard import RequestGuard
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


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def too_large(message: str) -> bentoml.exceptions.BentoMLException:
    return bentoml.exceptions.BentoMLException(message, error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


@bentoml.service(traffic={"timeout": 60, "max_concurrency": _env_int("PRM_MAX_CONCURRENCY", 64)})
class PRMService:
    def __init__(self) -> None:
        from prm.scoring import ONNX_FILE, Scorer

        self.max_items = _env_int("PRM_MAX_ITEMS", 256)
        self.max_steps = _env_int("PRM_MAX_STEPS", 128)
        folder = Path(os.environ.get("PRM_MODEL_DIR", "prm_model"))
        backend = os.environ.get("PRM_BACKEND") or ("onnx" if (folder / ONNX_FILE).is_file() else "torch")
        self.scorer = Scorer(folder, backend=backend)
        self.scorer.score([(i.prompt, i.steps) for i in EXAMPLE_ITEMS])  # warm-up before /readyz
        self.ready = True
        log.info("PRM service ready: %s (%s backend)", folder, backend)

    @bentoml.api
    def score(self, items: list[Item] = EXAMPLE_ITEMS, aggregate: Aggregate = "min") -> ScoreResponse:
        from prm.scoring import aggregate as combine

        step_scores = self._score([(i.prompt, i.steps) for i in items])
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
        scores = [combine(s, aggregate) for s in self._score([(prompt, c) for c in candidates])]
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
        for i, (item, step_scores) in zip(where, zip(items, self._score(items), strict=True), strict=True):
            rewards[i], n_steps[i] = combine(step_scores, "min"), float(len(item[1]))
        return OpenRLHFResponse(rewards=rewards, scores=rewards, extra_logs={"prm_steps": n_steps})

    def _score(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        """Calibrated step scores, after the request limits (413 with what to change)."""
        from prm.tokenization import TooLongError

        if len(items) > self.max_items:
            raise too_large(f"{len(items)} solutions in one request; the limit is {self.max_items} "
                            "(split the request, or raise PRM_MAX_ITEMS on the server)")
        for n, (_, steps) in enumerate(items):
            if len(steps) > self.max_steps:
                raise too_large(f"solution {n} has {len(steps)} steps; the limit is {self.max_steps} (PRM_MAX_STEPS)")
        try:
            return self.scorer.score(items)
        except TooLongError as exc:
            raise too_large(f"a solution is too long for the model: {exc}") from None

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)


PRMService.add_asgi_middleware(RequestGuard)
