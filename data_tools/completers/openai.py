"""Rollouts from OpenAI-compatible servers (vLLM, SGLang, llama.cpp, ...) over HTTP.

``OpenAICompleter`` sends each rollout as one request (``n=1`` with that rollout's seed, so every
rollout can be reproduced alone; ``batch_samples`` asks for a prefix's samples in one request
instead), at most ``concurrency`` at a time, round-robin over ``base_urls``. ``/completions``
continues the raw prefix (few-shot examples, question, steps); ``chat`` sends the question as the
user turn and the steps so far as an assistant turn to continue (``continue_final_message``, as
vLLM and SGLang accept it; the few-shot examples are not sent).

Failures: a timeout, a connection error, a 429 or a 5xx is retried up to ``max_retries`` times after
an exponential backoff with full jitter (a ``Retry-After`` header, seconds or an HTTP date, is
honoured up to 30 s; ``data_tools.retry`` owns the loop), on the next server of the round. A request
that still fails is counted and its prefix returned as None, so the labeller leaves that example out
and a rerun retries it. 401, 403 and 404 mean the settings are wrong (key, URL, model) and stop the
run at once; any other 4xx fails only its request. ``stats`` counts attempts, retries, timeouts and
status codes for the run report.

Seeds go out as 31-bit integers (llama.cpp takes 32-bit ones). Servers that ignore ``seed`` still
work, but their rollouts are then not reproducible, and neither is a resumed run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from data_tools.completers.protocol import RolloutRequest, Sampling, truncate_at_stop
from data_tools.flags import opt, problems
from data_tools.retry import Retry, RetryPolicy, acall, parse_retry_after

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
FATAL_STATUS = frozenset({401, 403, 404})
MAX_BACKOFF_S = 30.0


class ServerSettingsError(ValueError):
    """The server refused the run's settings (key, URL, model): retrying cannot help."""


@dataclass
class OpenAIConfig:
    """How to reach the servers (``prm label --completer openai`` flags, prefixed ``--openai-``)."""

    base_urls: tuple[str, ...] = ()
    """server base URLs, used round-robin, e.g. http://127.0.0.1:8000/v1 (ending where /completions is)"""
    model: str = ""
    """model name sent with each request (vLLM: the served model's name or path)"""
    chat: bool = False
    """use /chat/completions (question as the user turn, steps as an assistant turn to continue) instead of /completions"""
    api_key_env: str = "OPENAI_API_KEY"
    """environment variable holding the API key, sent as a bearer token when set"""
    concurrency: int = opt(32, min=1)
    """requests in flight at once, over all servers"""
    timeout_s: float = opt(60.0, above=0)
    """seconds before a request is abandoned (and retried)"""
    max_retries: int = opt(5, min=0)
    """retries of a request after a timeout, a connection error, a 429 or a 5xx"""
    backoff_s: float = opt(0.5, min=0)
    """first retry's longest wait; it doubles per retry (full jitter), up to 30 s"""
    batch_samples: bool = False
    """ask for all of a prefix's samples in one request (n, one seed): fewer requests, rollouts no longer reproducible one by one"""

    def problems(self) -> list[str]:
        out = problems(self, prefix="openai-")
        if not self.base_urls:
            out.append("--openai-base-urls is required with --completer openai (e.g. http://127.0.0.1:8000/v1)")
        out += [f"--openai-base-urls: {u!r} is not an http(s) URL" for u in self.base_urls
                if not u.startswith(("http://", "https://"))]
        if not self.model:
            out.append("--openai-model is required with --completer openai (the served model's name)")
        return out


@dataclass
class HTTPStats:
    """What the HTTP backend saw over a run."""

    attempts: int = 0
    retries: int = 0
    timeouts: int = 0
    connect_errors: int = 0
    bad_responses: int = 0
    failed_requests: int = 0
    status: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "retries": self.retries, "timeouts": self.timeouts,
                "connect_errors": self.connect_errors, "bad_responses": self.bad_responses,
                "failed_requests": self.failed_requests, "status": {str(k): v for k, v in sorted(self.status.items())}}


class OpenAICompleter:
    def __init__(self, config: OpenAIConfig, sampling: Sampling | None = None, transport: Any = None):
        self.config, self.sampling = config, sampling or Sampling()
        self.stats = HTTPStats()
        self._urls = itertools.cycle([u.rstrip("/") for u in config.base_urls])
        self._transport = transport  # an httpx transport, for tests
        key = os.environ.get(config.api_key_env, "")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    def complete(self, requests: Sequence[RolloutRequest]) -> list[list[str] | None]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.acomplete(requests))
        with ThreadPoolExecutor(1) as pool:  # called from inside an event loop (a notebook): use another thread
            return pool.submit(asyncio.run, self.acomplete(requests)).result()

    async def acomplete(self, requests: Sequence[RolloutRequest]) -> list[list[str] | None]:
        import httpx

        seeds_per_call = [[r.seeds] if self.config.batch_samples else [(s,) for s in r.seeds] for r in requests]
        limits = httpx.Limits(max_connections=self.config.concurrency)
        gate = asyncio.Semaphore(self.config.concurrency)
        async with httpx.AsyncClient(timeout=self.config.timeout_s, limits=limits, headers=self._headers,
                                     transport=self._transport) as client:
            calls = [self._call(client, gate, r, seeds) for r, group in zip(requests, seeds_per_call, strict=True)
                     for seeds in group]
            results = iter(await asyncio.gather(*calls))
        out: list[list[str] | None] = []
        for group in seeds_per_call:
            parts = [next(results) for _ in group]
            out.append(None if any(p is None for p in parts) else [t for p in parts for t in p])
        return out

    def body(self, request: RolloutRequest, seeds: Sequence[int]) -> tuple[str, dict[str, Any]]:
        """(endpoint path, JSON body) asking for ``len(seeds)`` samples of ``request``'s continuation."""
        s = self.sampling
        body: dict[str, Any] = {"model": self.config.model, "max_tokens": s.max_new_tokens,
                                "temperature": s.temperature, "n": len(seeds), "seed": seeds[0] & 0x7FFFFFFF,
                                "stop": list(s.stop)}
        if s.top_k:
            body["top_k"] = s.top_k  # a vLLM/SGLang/llama.cpp extension; --top-k 0 leaves it out
        if not self.config.chat:
            return "/completions", {**body, "prompt": request.prefix}
        messages = [{"role": "user", "content": request.prompt}]
        if request.steps:
            messages.append({"role": "assistant", "content": "".join(step + "\n" for step in request.steps)})
        return "/chat/completions", {**body, "messages": messages, "continue_final_message": bool(request.steps),
                                     "add_generation_prompt": not request.steps}

    async def _call(self, client, gate: asyncio.Semaphore, request: RolloutRequest,
                    seeds: Sequence[int]) -> list[str] | None:
        import httpx

        path, body = self.body(request, seeds)
        cfg, stats = self.config, self.stats

        async def send(attempt: int) -> list[str] | None | Retry:
            """One try on the next server of the round: the texts, None (failed, not retried) or a Retry."""
            if attempt:
                stats.retries += 1
            url = next(self._urls) + path
            try:
                async with gate:
                    stats.attempts += 1
                    response = await client.post(url, json=body)
            except httpx.TimeoutException:
                stats.timeouts += 1
                return Retry(reason="timed out")
            except httpx.TransportError as exc:
                stats.connect_errors += 1
                return Retry(reason=f"{type(exc).__name__}: {exc}")
            stats.status[response.status_code] += 1
            if response.status_code == 200:
                texts = self._texts(response, len(seeds))
                if texts is not None:
                    return texts
                stats.bad_responses += 1
                return Retry(reason="a 200 without the expected choices")
            if response.status_code in FATAL_STATUS:
                raise ServerSettingsError(f"{url} answered {response.status_code}: {response.text[:200]}; check "
                                          f"--openai-base-urls, --openai-model and ${cfg.api_key_env}")
            if response.status_code in RETRY_STATUS:
                return Retry(parse_retry_after(response.headers.get("retry-after")), f"HTTP {response.status_code}")
            log.warning("%s answered %s, not retried: %s", url, response.status_code, response.text[:200])
            return None

        outcome = await acall(send, RetryPolicy(retries=cfg.max_retries, base_s=cfg.backoff_s, max_s=MAX_BACKOFF_S))
        if isinstance(outcome, Retry):
            log.warning("giving up on a request to %s after %d attempts (last: %s)", path, cfg.max_retries + 1,
                        outcome.reason)
            outcome = None
        if outcome is None:
            stats.failed_requests += 1
        return outcome

    def _texts(self, response, n: int) -> list[str] | None:
        """The ``n`` continuations of a 200 response, cut at the stop strings; None when it has not got them."""
        try:
            choices = sorted(response.json()["choices"], key=lambda c: c.get("index", 0))
            texts = [c["message"]["content"] if self.config.chat else c["text"] for c in choices]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            return None
        if len(texts) != n or not all(isinstance(t, str) for t in texts):
            return None
        return [truncate_at_stop(t, self.sampling.stop)[0] for t in texts]

