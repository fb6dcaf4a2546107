"""Clients of the scoring service: ``PRMClient`` (sync) and ``AsyncPRMClient``. No torch, no ``prm``.

Both split large requests into batches of ``batch_size`` solutions (the async one sends them
concurrently, at most ``max_concurrency`` at a time, and keeps the order), retry transport errors
and overload answers (429, 503) with exponential backoff and full jitter, waiting at least what a
``Retry-After`` header asks (up to ``max_wait_s``; ``data_tools.retry``, standard library only, owns
the loop), and raise ``ServiceError`` with the status and the service's message for anything else:
a 4xx is the caller's to fix, never retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx

from data_tools.retry import Retry, RetryPolicy, acall, call, parse_retry_after

RETRY_STATUS = (429, 503)


class ServiceError(RuntimeError):
    def __init__(self, path: str, status: int, text: str):
        super().__init__(f"POST {path} -> {status}: {text[:500]}")
        self.status = status


def _score_body(items: Sequence[dict], aggregate: str) -> dict:
    return {"items": [{"prompt": it["prompt"], "steps": list(it["steps"])} for it in items], "aggregate": aggregate}


def _batches(items: Sequence[dict], size: int) -> list[Sequence[dict]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _policy(retries: int, backoff_s: float, max_wait_s: float) -> RetryPolicy:
    return RetryPolicy(retries=retries, base_s=backoff_s, max_s=max_wait_s, retry_on=(httpx.TransportError,))


def _outcome(path: str, resp: httpx.Response) -> dict | Retry:
    """The answer's JSON, or a Retry for overload (with the server's Retry-After); raises for errors."""
    if resp.status_code in RETRY_STATUS:
        return Retry(parse_retry_after(resp.headers.get("retry-after")), f"HTTP {resp.status_code}", resp)
    if resp.status_code >= 400:
        raise ServiceError(path, resp.status_code, resp.text)
    return resp.json()


def _answer(path: str, outcome: dict | Retry) -> dict:
    """The answer, or ``ServiceError`` for an overload answer that outlasted the retries."""
    if isinstance(outcome, Retry):
        raise ServiceError(path, outcome.last.status_code, outcome.last.text)
    return outcome


class PRMClient:
    def __init__(self, base_url: str = "http://127.0.0.1:3000", timeout: float = 60.0, retries: int = 2,
                 token: str | None = None, batch_size: int = 64, http: httpx.Client | None = None,
                 backoff_s: float = 0.2, max_wait_s: float = 30.0):
        """``http``: an ``httpx.Client`` to send through instead (e.g. starlette's TestClient of the app).
        ``backoff_s``: the first retry's longest wait (doubling per retry, full jitter); ``max_wait_s``:
        the longest wait, a ``Retry-After`` included."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries, self.batch_size = retries, batch_size
        self._policy = _policy(retries, backoff_s, max_wait_s)
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def score(self, items: Sequence[dict], aggregate: str = "min") -> list[dict]:
        """``items``: [{"prompt": str, "steps": [str, ...]}]; returns [{"step_scores", "score"}]."""
        return [r for batch in _batches(items, self.batch_size)
                for r in self._post("/score", _score_body(batch, aggregate))["results"]]

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    def rank(self, prompt: str, candidates: Sequence[Sequence[str]], aggregate: str = "min") -> dict:
        """Best-of-N: ``candidates`` are step lists of one prompt; returns {"scores", "order", "best"}."""
        body = {"prompt": prompt, "candidates": [list(c) for c in candidates], "aggregate": aggregate}
        return self._post("/rank", body)

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.5, process=None) -> None:
        """Poll ``/readyz``; with ``process`` (a Popen), fail at once if that server process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the service process exited with code {process.returncode} before it was ready")
            time.sleep(interval)
        raise TimeoutError(f"service at {self._http.base_url} not ready after {timeout:.0f} s")

    def _post(self, path: str, body: dict) -> dict:
        return _answer(path, call(lambda attempt: _outcome(path, self._http.post(path, json=body)), self._policy))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PRMClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncPRMClient:
    """The async client: batches of ``batch_size`` sent concurrently, at most ``max_concurrency`` at once."""

    def __init__(self, base_url: str = "http://127.0.0.1:3000", timeout: float = 60.0, retries: int = 2,
                 token: str | None = None, batch_size: int = 64, max_concurrency: int = 8,
                 http: httpx.AsyncClient | None = None, backoff_s: float = 0.2, max_wait_s: float = 30.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries, self.batch_size = retries, batch_size
        self._policy = _policy(retries, backoff_s, max_wait_s)
        self._limit = asyncio.Semaphore(max_concurrency)
        self._http = http or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    async def score(self, items: Sequence[dict], aggregate: str = "min") -> list[dict]:
        parts = await asyncio.gather(*(self._post("/score", _score_body(batch, aggregate))
                                       for batch in _batches(items, self.batch_size)))
        return [r for part in parts for r in part["results"]]

    async def rank(self, prompt: str, candidates: Sequence[Sequence[str]], aggregate: str = "min") -> dict:
        return await self._post("/rank", {"prompt": prompt, "candidates": [list(c) for c in candidates],
                                          "aggregate": aggregate})

    async def _post(self, path: str, body: dict) -> dict:
        async def send(attempt: int) -> dict | Retry:
            return _outcome(path, await self._http.post(path, json=body))

        async with self._limit:  # held while backing off too, so retries add no load to an overloaded service
            return _answer(path, await acall(send, self._policy))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPRMClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
