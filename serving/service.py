"""The BentoML scoring service over a PRM artifact, with the fastest backend it holds that passed its gate.

Two services. ``PRMService`` is the public front: ``POST /score`` (step scores and a solution score
per item), ``POST /rank`` (best-of-N over candidates of one prompt), ``POST /openrlhf`` (OpenRLHF's
remote reward contract); BentoML's ``/livez``, ``/readyz`` (after one warm-up inference) and
``/metrics``. It checks the limits, then hands the solutions to ``PRMInference`` (through
``bentoml.depends``), whose one batchable API holds the model: BentoML's adaptive batcher merges the
solutions of concurrent requests into one call, and ``prm.scoring.Scorer`` sorts them by length and
pads each forward batch only to its own longest row (on a CPU a forward pass is one row: no padding).

Under ``bentoml serve`` the two run as separate processes (the front as the API server, the inner
service as its own worker on a local socket), so batching happens there. Anywhere else (the class
called directly, ``PRMService.to_asgi()``, ``bentoml serve --development``) the dependency is a
plain in-process instance and every request is scored on its own.

The artifact folder comes from ``$PRM_MODEL_DIR`` (``prm serve MODEL`` sets it). Heavy imports
happen in ``__init__`` so importing this module stays cheap. Bad input never gets a 5xx: malformed
bodies are answered by ``serving.guard`` (400/401/413/415), wrong fields by BentoML's validation
(400), and the limits below by 413. Every setting is a field of ``serving.settings.ServeConfig``
(``prm serve --help`` lists them with their defaults), handed to these processes as ``PRM_*``
environment variables and read at start-up: ``PRM_MAX_ITEMS`` solutions per request (256),
``PRM_MAX_STEPS`` steps per solution (128), ``PRM_MAX_LENGTH`` tokens per solution (0: the
artifact's ``max_length``; more, up to the backbone's positions, is extrapolation and the worker logs
a WARNING), ``PRM_MAX_BODY_BYTES`` (4 MiB), ``PRM_API_TOKEN`` for bearer-token auth.

Overload is refused at once rather than queued: ``PRM_MAX_CONCURRENCY`` requests in flight (64;
BentoML answers the next with a 429), and ``PRM_MAX_WAIT_MS`` (30000): a request whose solutions,
behind those already waiting for the model, would wait longer than this at the rate the model has
been answering gets a 429 saying so (``serving.admission``); half the 60 s timeout, so admitted
work finishes and batch clients still get in. Lower it where callers would rather hear "no" sooner.

Batching: ``PRM_BATCH_MAX_SIZE`` solutions per model call (64); ``PRM_BATCH_MAX_LATENCY_MS``
(60000: BentoML's batcher drops, with a 503, a queued call it expects to miss this; a backstop
behind the two limits above); ``PRM_FORWARD_BATCH`` rows per forward pass (0: ``forward_batch``'s
choice, by backend and device); ``PRM_BATCH_MAX_HOLD_MS`` (0) and ``PRM_BATCH_TICK_MS`` (5), two of the
batcher's internals (``serving.batcher``). ``PRM_THREADS`` (model threads; default all cores).

``PRM_PREFIX_CACHE_MB`` (256; 0: off): on the torch backends the scorer keeps the keys/values of recently
scored token prefixes (``prm.scoring.prefix_cache``), shared by all requests, so a search sending its
beams extended by one step computes only the new step's tokens; the ONNX backends score in full. Its
hits, misses and tokens computed are counters on ``/metrics`` (``serving.prefix_metrics``).

``PRM_BACKEND`` (default: ``prm.scoring.default_backend``, the fastest backend the artifact holds that
passed its quality gate, per ``gates.json``: on a CPU torch-bf16-gptq, then onnx-int8, onnx, torch; on
a GPU onnx-fp16 first). The worker compiles and warms it up on every shape class it will see (one row
a pass and, when it batches, several rows) before ``/readyz`` says ready, so the first request is no
slower than the tenth.
Prompts and steps are never logged (``serving.guard.quiet_refusals``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from http import HTTPStatus
from pathlib import Path

import bentoml

from serving.admission import Admission
from serving.batcher import tune_batcher
from serving.guard import RequestGuard, quiet_refusals
from serving.prefix_metrics import CacheMetrics
from serving.schemas import (
    EXAMPLE_ITEMS,
    Aggregate,
    Item,
    OpenRLHFResponse,
    RankResponse,
    Result,
    ScoreResponse,
    StepScores,
)
from serving.settings import ServeConfig

log = logging.getLogger(__name__)


# Read when the module is imported: BentoML takes these in the decorators below.
SETTINGS = ServeConfig.from_env()


def forward_batch(backend: str, device: str, incremental: bool = False) -> int:
    """Rows per forward pass when ``PRM_FORWARD_BATCH`` is 0. A GPU wants full batches: the whole call
    (up to ``PRM_BATCH_MAX_SIZE``, 64), sorted by length and padded to its longest. On a CPU a solution
    costs about what it costs alone, and padding solutions of other lengths to one another only adds
    work: demo model, one thread, ~185 ms of CPU per solution alone, ~200 sorted in batches of 16,
    ~250 in unsorted groups of 8, which is what a batch of a few requests is. With the prefix cache
    (``incremental``) a row is mostly one new step, a few short rows alike, and one pass per row leaves the
    GEMMs too short: 16 a pass scored a beam search's candidates ~2x faster than 1 (demo model, one thread,
    benchmarks/incremental_scoring.py: 11.0 s against 23.1 s)."""
    if device == "cuda":
        return 64
    return 16 if incremental else 1


def warmup_items(n: int) -> list[Item]:
    """``n`` solutions of unequal lengths (1 to 3 steps) for the warm-up."""
    base = EXAMPLE_ITEMS[0]
    return [Item(prompt=base.prompt, steps=base.steps * (1 + i % 3)) for i in range(max(2, n))]


def too_large(message: str) -> bentoml.exceptions.BentoMLException:
    return bentoml.exceptions.BentoMLException(message, error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


# The front's client of this service replaces its connection pool every `max_requests` calls or `max_age`
# seconds and closes the old one with calls still in flight on it (BentoML 1.4.40), which failed ~1 in 100
# concurrent calls with "Server disconnected": so never, in practice.
@bentoml.service(traffic={"timeout": SETTINGS.timeout_s}, runner_connection={"max_requests": 1 << 30, "max_age": 1e9})
class PRMInference:
    """The model: one batchable API over solutions, fed by BentoML's adaptive batcher."""

    def __init__(self) -> None:
        from prm.artifacts import Artifact
        from prm.scoring import Scorer, default_backend

        quiet_refusals()
        settings = ServeConfig.from_env()
        tune_batcher(settings.batch_max_hold_ms / 1000, settings.batch_tick_ms / 1000)
        folder = Path(os.environ.get("PRM_MODEL_DIR", "prm_model"))
        backend = settings.backend or default_backend(Artifact(folder))
        self.scorer = Scorer(folder, backend=backend, threads=settings.threads or None,
                             max_length=settings.max_length or None,
                             checks={"on": True, "off": False}.get(settings.checks),
                             prefix_cache_mb=settings.prefix_cache_mb)
        self.scorer.batch_size = settings.forward_batch or forward_batch(backend, self.scorer.device,
                                                                         self.scorer.prefix_cache is not None)
        # In-process (no `bentoml serve`) several threads may call at once; the model runs one batch at a time.
        self._lock = threading.Lock()
        # Warm-up before /readyz, once per shape class a request can bring: one row a pass, and several
        # rows of unequal lengths (torch.compile builds a graph for a batch of one and one for the rest).
        self.score_steps(EXAMPLE_ITEMS)
        if self.scorer.batch_size > 1:
            self.score_steps(warmup_items(self.scorer.batch_size))
        self.score_steps(EXAMPLE_ITEMS)
        if self.scorer.prefix_cache is not None:
            self.scorer.prefix_cache.clear()  # the warm-up's items
        self.metrics = CacheMetrics(self.scorer)
        self.ready = True
        log.info("PRM inference ready: %s (%s backend, prefix cache %s)", folder, backend,
                 "off" if self.scorer.prefix_cache is None else f"{settings.prefix_cache_mb} MiB")

    @bentoml.api(batchable=True, max_batch_size=SETTINGS.batch_max_size, max_latency_ms=SETTINGS.batch_max_latency_ms)
    def score_steps(self, items: list[Item]) -> list[StepScores]:
        """Calibrated step scores of each solution (a solution too long for the model says so instead)."""
        pairs = [(i.prompt, i.steps) for i in items]
        with self._lock:
            encoded = self.scorer.encode_each(pairs)
            scored = self.scorer.score_encoded(pairs, encoded)
            if hasattr(self, "metrics"):  # not during the warm-up
                self.metrics.publish()
        return [StepScores(too_long=self._too_long(s)) if isinstance(s, Exception)
                else StepScores(step_scores=s, tokens=len(e.input_ids)) for s, e in zip(scored, encoded, strict=True)]

    def _too_long(self, exc: Exception) -> str:
        """Why a solution was refused, with this server's limit and how to raise it."""
        limit, positions = self.scorer.max_length, self.scorer.position_limit
        if positions is not None and limit >= positions:
            return (f"{exc} (this server scores up to {limit} tokens per solution, all of the backbone's "
                    "positions: `prm serve --max-length N` cannot raise it further)")
        room = f", up to the backbone's {positions} positions" if positions is not None else ""
        return (f"{exc} (this server scores up to {limit} tokens per solution; start it with "
                f"`prm serve --max-length N` or PRM_MAX_LENGTH=N to raise that{room})")

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)


# runner_probe off: BentoML's own check of the inference worker in /readyz hung for the whole 60 s
# traffic timeout while that worker was still loading; __is_ready__ below checks it with a deadline.
@bentoml.service(traffic={"timeout": SETTINGS.timeout_s, "max_concurrency": SETTINGS.max_concurrency},
                 runner_probe={"enabled": False})
class PRMService:
    inference = bentoml.depends(PRMInference)

    def __init__(self) -> None:
        quiet_refusals()
        settings = ServeConfig.from_env()
        self.max_items, self.max_steps = settings.max_items, settings.max_steps
        self.admission = Admission(settings.max_wait_ms / 1000)
        # Resolving the dependency here means: in-process, load and warm up the model before /readyz;
        # under `bentoml serve`, a client of the inference worker (whose readiness /readyz also checks).
        self.inference  # noqa: B018
        self.ready = True

    @bentoml.api
    async def score(self, items: list[Item] = EXAMPLE_ITEMS, aggregate: Aggregate = "min") -> ScoreResponse:
        from prm.scoring import aggregate as combine

        scored = await self._score(items)
        return ScoreResponse(results=[Result(step_scores=s.step_scores, score=combine(s.step_scores, aggregate),
                                             tokens=s.tokens) for s in scored])

    @bentoml.api
    async def rank(self, prompt: str = EXAMPLE_ITEMS[0].prompt,
                   candidates: list[list[str]] = [EXAMPLE_ITEMS[0].steps],  # noqa: B006 (a schema example)
                   aggregate: Aggregate = "min") -> RankResponse:
        """Best-of-N over candidate solutions (step lists) of one prompt."""
        from prm.scoring import aggregate as combine

        if not candidates or any(not c for c in candidates):
            raise bentoml.exceptions.InvalidArgument("'candidates' needs at least one candidate, each with "
                                                     "at least one step")
        scores = [combine(s.step_scores, aggregate)
                  for s in await self._score([Item(prompt=prompt, steps=c) for c in candidates])]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return RankResponse(scores=scores, order=order, best=order[0])

    @bentoml.api
    async def openrlhf(self, query: list[str], prompts: list[str] | None = None,
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
                items.append(Item(prompt=prompt, steps=steps))
                where.append(i)
        rewards, n_steps = [0.0] * len(query), [0.0] * len(query)
        for i, (item, scored) in zip(where, zip(items, await self._score(items), strict=True), strict=True):
            rewards[i], n_steps[i] = combine(scored.step_scores, "min"), float(len(item.steps))
        return OpenRLHFResponse(rewards=rewards, scores=rewards, extra_logs={"prm_steps": n_steps})

    async def _score(self, items: list[Item]) -> list[StepScores]:
        """Calibrated step scores and tokens read, after the request limits (413 with what to change)."""
        if len(items) > self.max_items:
            raise too_large(f"{len(items)} solutions in one request; the limit is {self.max_items} "
                            "(split the request, or raise PRM_MAX_ITEMS on the server)")
        for n, item in enumerate(items):
            if len(item.steps) > self.max_steps:
                raise too_large(f"solution {n} has {len(item.steps)} steps; the limit is {self.max_steps} (PRM_MAX_STEPS)")
        if not items:
            return []
        scored = await self._infer(items)
        for n, s in enumerate(scored):
            if s.too_long is not None:
                raise too_large(f"solution {n} is too long for the model: {s.too_long}")
        return scored

    async def _infer(self, items: list[Item]) -> list[StepScores]:
        import aiohttp  # BentoML's client of the inference worker

        wait = self.admission.admit(len(items))
        if wait is not None:
            raise bentoml.exceptions.BentoMLException(
                f"overloaded: {len(items)} solutions would wait ~{wait:.0f} s for the model, over the server's "
                "PRM_MAX_WAIT_MS; retry later or send fewer at once", error_code=HTTPStatus.TOO_MANY_REQUESTS)
        answered = False
        try:
            try:
                scored = await self.inference.to_async.score_steps(items)
            except aiohttp.ClientConnectionError:  # e.g. a pooled connection the worker had closed when idle
                log.warning("connection to the inference worker failed; retrying once (scoring is idempotent)")
                scored = await self.inference.to_async.score_steps(items)
            answered = True
            return scored
        finally:
            self.admission.release(len(items), answered)

    async def __is_ready__(self) -> bool:
        if not getattr(self, "ready", False):
            return False
        probe = getattr(self.inference, "is_ready", None)  # a client of the worker under `bentoml serve`
        if probe is None:
            return True  # in-process: the model was loaded and warmed up in __init__
        try:
            return await asyncio.wait_for(probe(2), timeout=3)
        except Exception:  # not up yet (timeout, refused connection): not ready, never a 500
            return False


PRMService.add_asgi_middleware(RequestGuard)
