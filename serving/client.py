"""Clients of the scoring service: ``PRMClient`` (sync) and ``AsyncPRMClient``. No torch, no ``prm``.

Both split large requests into batches of ``batch_size`` solutions (the async one sends them
concurrently, at most ``max_concurrency`` at a time, and keeps the order), retry transport errors
and overload answers (429, 503) with exponential backoff, and raise ``ServiceError`` with the
status and the service's message for anything else: a 4xx is the caller's to fix, never retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx

RETRY_STATUS = (429, 503)


class ServiceError(RuntimeError):
    def __init__(self, path: str, status: int, text: str):
        super().__init__(f"POST {path} -> {status}: {text[:500]}")
        self.status = status


def _score_body(items: Sequence[dict], aggregate: str) -> dict:
    return {"items": [{"prompt": it["prompt"], "steps": list(it["steps"])} for it in items], "aggregate": aggregate}


def _batches(items: Sequence[dict], size: int) -> list[Sequence[dict]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _backoff(attempt: int) -> float:
    return 0.2 * 2**attempt


def _outcome(path: str, resp: httpx.Response, attempt: int, retries: int) -> dict | None:
    """The answer's JSON, or None to retry after a backoff (overload, retries left); raises for errors."""
    if resp.status_code in RETRY_STATUS and attempt < retries:
        return None
    if resp.status_code >= 400:
        raise ServiceError(path, resp.status_code, resp.text)
    return resp.json()


class PRMClient:
    def __init__(self, base_url: str = "http://127.0.0.1:3000", timeout: float = 60.0, retries: int = 2,
                 token: str | None = None, batch_size: int = 64, http: httpx.Client | None = None):
        """``http``: an ``httpx.Client`` to send through instead (e.g. starlette's TestClient of the app)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries, self.batch_size = retries, batch_size
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
        for attempt in range(self.retries + 1):
            try:
                answer = _outcome(path, self._http.post(path, json=body), attempt, self.retries)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if answer is not None:
                    return answer
            time.sleep(_backoff(attempt))  # overloaded or unreachable: back off and retry
        raise AssertionError("unreachable")

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
                 http: httpx.AsyncClient | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries, self.batch_size = retries, batch_size
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
        async with self._limit:
            for attempt in range(self.retries + 1):
                try:
                    answer = _outcome(path, await self._http.post(path, json=body), attempt, self.retries)
                except httpx.TransportError:
                    if attempt == self.retries:
                        raise
                else:
                    if answer is not None:
                        return answer
                await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPRMClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
