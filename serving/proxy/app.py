"""The proxy's ASGI app (starlette): ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``.

Each chat request runs one search (``serving.search.run_search``) in a worker thread, the
strategy's ``propose`` going to the generator (``StepProposer``) and its ``score`` to the PRM service
(``PRMClient``). The event loop only waits: at most until the request's deadline, after which the
client gets a 504 error body and the thread is told to stop at its next backend call (each of those
is bounded by ``--backend-timeout-s``). Searches still running, given up or not, count against
``--max-concurrency``; one more gets a 429 at once. A streaming request gets its answer once the
search is done, as ``chat.completion.chunk`` events, so an error still comes with its own status.

Not promised: streaming the steps while the search runs (a search does not know its answer until it
ends), ``n`` > 1, tools, or logprobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from serving.client import PRMClient, ServiceError
from serving.proxy.config import ProxyConfig
from serving.proxy.generator import Deadline, StepProposer, deadline_error, token_count
from serving.proxy.protocol import (
    ProxyError,
    SearchRequest,
    bad_request,
    chunks,
    completion,
    models_list,
    parse_request,
    sse,
    usage,
)
from serving.search import STRATEGIES, run_search

log = logging.getLogger(__name__)


def make_app(config: ProxyConfig, search: Any = None, strategies: tuple[str, ...] | None = None):
    """The app; ``search`` and ``strategies`` default to ``serving.search``'s ``run_search`` and ``STRATEGIES``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    search = search or run_search
    strategies = strategies or STRATEGIES
    proxy = _Proxy(config, search, strategies)

    def error(exc: ProxyError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    async def chat(request: Request):
        try:
            proxy.authorize(request.headers.get("authorization", ""))
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("the request body is not valid JSON") from None
            req = parse_request(body, config, strategies)
            result, model, counts = await proxy.run(req)
        except ProxyError as exc:
            return error(exc)
        except Exception as exc:  # a bug, not a backend: say so in the same shape, log the traceback
            log.exception("prm proxy: internal error")
            return error(ProxyError(500, f"internal error of prm proxy: {type(exc).__name__}: {exc}", "api_error",
                                    "internal_error"))
        prompt_tokens, completion_tokens, prm_tokens = counts
        use = usage(prompt_tokens, completion_tokens, result, prm_tokens)
        if req.stream:
            events = chunks(req, model, result, use)
            return StreamingResponse(iter([sse(events)]), media_type="text/event-stream",
                                     headers={"cache-control": "no-cache"})
        return JSONResponse(completion(req, model, result, use))

    async def models(request: Request):
        try:
            proxy.authorize(request.headers.get("authorization", ""))
            names = [await asyncio.get_running_loop().run_in_executor(proxy.pool, proxy.default_model, None)]
        except ProxyError as exc:
            return error(exc)
        return JSONResponse(models_list(names, strategies))

    async def health(request: Request):
        return JSONResponse({"status": "ok", "searches_in_flight": proxy.in_flight})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        proxy.close()

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"]),
                             Route("/health", health, methods=["GET"])], lifespan=lifespan)


class _Proxy:
    """What the routes share: the HTTP clients, the worker threads, the count of searches in flight."""

    def __init__(self, config: ProxyConfig, search: Any, strategies: tuple[str, ...]):
        self.config, self.search, self.strategies = config, search, strategies
        self.pool = ThreadPoolExecutor(config.max_concurrency + 1, thread_name_prefix="prm-proxy-search")
        # A pool of its own for generator requests: search threads wait on it, so sharing theirs could deadlock.
        self.generator_pool = ThreadPoolExecutor(config.generator_concurrency, thread_name_prefix="prm-proxy-gen")
        self.http = httpx.Client(limits=httpx.Limits(max_connections=config.generator_concurrency + 4),
                                 timeout=config.backend_timeout_s)
        key = config.secret(config.generator_key_env)
        self.generator_headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.prm = PRMClient(config.prm_url, timeout=config.backend_timeout_s, retries=config.retries,
                             token=config.secret(config.prm_token_env) or None)
        self.token = config.secret(config.api_token_env)
        self.in_flight = 0
        self._model: str | None = config.generator_model or None

    def authorize(self, header: str) -> None:
        if self.token and header != f"Bearer {self.token}":
            raise ProxyError(401, "missing or wrong API key: send Authorization: Bearer <the proxy's token>",
                             "authentication_error", "invalid_api_key")

    async def run(self, req: SearchRequest) -> tuple[Any, str, tuple[int, int, int]]:
        if self.in_flight >= self.config.max_concurrency:
            raise ProxyError(429, f"prm proxy is running {self.in_flight} searches, its --max-concurrency; retry "
                             "shortly", "rate_limit_error", "proxy_busy")
        deadline = Deadline(self.config.timeout_s)
        self.in_flight += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, self._search, req, deadline)
        future.add_done_callback(lambda _: self._finished(loop))
        done, _ = await asyncio.wait({future}, timeout=deadline.remaining())
        if not done:
            deadline.cancelled.set()  # the thread stops at its next backend call
            raise deadline_error(deadline.seconds, "the search")
        return future.result()

    def _finished(self, loop: asyncio.AbstractEventLoop) -> None:
        self.in_flight -= 1

    def _search(self, req: SearchRequest, deadline: Deadline) -> tuple[Any, str, tuple[int, int, int]]:
        cfg = self.config
        model = req.model or self.default_model(deadline)
        proposer = StepProposer(self.http, cfg.generator_url, model, api=cfg.generator_api,
                                max_step_tokens=cfg.max_step_tokens, temperature=req.temperature, seed=req.seed,
                                deadline=deadline, backend_timeout_s=cfg.backend_timeout_s, retries=cfg.retries,
                                headers=self.generator_headers, pool=self.generator_pool)
        given = list(req.steps)

        def propose(prompt: str, steps: list[str], n: int):
            return proposer(prompt, given + list(steps), n)

        propose.batch = lambda prompt, requests: proposer.batch(prompt, [(given + list(s), n) for s, n in requests])

        scored, prm_tokens = [], [0]

        def score(prompt: str, step_lists: list[list[str]]) -> list[list[float]]:
            deadline.check("the PRM service")
            scored.append(len(step_lists))
            results = self._score(prompt, [given + list(s) for s in step_lists], deadline) if step_lists else []
            prm_tokens[0] += sum(token_count(r.get("tokens")) for r in results)
            # the given steps are every candidate's: the search sees its own
            return [list(r["step_scores"])[len(given):] for r in results]

        try:
            result = self.search(req.strategy, req.prompt, propose, score, req.budget, seed=req.seed,
                                 aggregate=req.aggregate, max_steps=req.max_steps, **req.options)
        except (TypeError, ValueError) as exc:
            if proposer.calls or scored:  # past its arguments: a bug, which the 500 handler reports
                raise
            raise bad_request(f"{req.strategy}: {exc}", "options") from None  # it refused its budget or options
        return result, model, (proposer.prompt_tokens, proposer.completion_tokens, prm_tokens[0])

    def _score(self, prompt: str, step_lists: list[list[str]], deadline: Deadline) -> list[dict]:
        """The service's results (``step_scores``, ``tokens``) for each step list, or a ProxyError."""
        url = self.config.prm_url
        try:
            return self.prm.score([{"prompt": prompt, "steps": steps} for steps in step_lists])
        except ServiceError as exc:
            if exc.status in (400, 413, 422):
                raise ProxyError(400, f"the PRM service refused the steps: {exc}", "invalid_request_error",
                                 "prm_rejected") from None
            raise ProxyError(502, f"the PRM service at {url} failed: {exc}", "api_error", "prm_error") from None
        except httpx.TimeoutException:
            if deadline.remaining() <= 0:
                raise deadline_error(deadline.seconds, "the PRM service") from None
            raise ProxyError(504, f"the PRM service at {url} did not answer within {self.config.backend_timeout_s:g} "
                             "s (prm proxy --backend-timeout-s)", "timeout", "prm_timeout") from None
        except httpx.TransportError as exc:
            raise ProxyError(502, f"the PRM service at {url} is unreachable ({type(exc).__name__}: {exc}); check "
                             "that prm serve runs and prm proxy --prm-url", "api_error", "prm_unavailable") from None
        except ValueError as exc:  # a 200 whose body is not JSON
            raise ProxyError(502, f"the PRM service at {url} answered without readable scores ({exc})", "api_error",
                             "prm_bad_response") from None

    def default_model(self, deadline: Deadline | None = None) -> str:
        """The configured generator model, or the first one the generator lists (asked once)."""
        if self._model:
            return self._model
        url = self.config.generator_url.rstrip("/") + "/models"
        timeout = min(self.config.backend_timeout_s, deadline.check("the generator") if deadline else 10.0)
        try:
            resp = self.http.get(url, headers=self.generator_headers, timeout=timeout)
            resp.raise_for_status()
            self._model = str(resp.json()["data"][0]["id"])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProxyError(502, f"could not learn the generator's model from {url} ({type(exc).__name__}: {exc}); "
                             "name it in the request's model or with prm proxy --generator-model", "api_error",
                             "generator_unavailable") from None
        return self._model

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.generator_pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()
        self.prm.close()
