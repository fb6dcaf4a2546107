"""``PRMClient``: a small HTTP client for the scoring service. Imports neither torch nor ``prm``."""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx


class PRMClient:
    def __init__(self, base_url: str = "http://127.0.0.1:3000", timeout: float = 60.0, retries: int = 2,
                 token: str | None = None, http: httpx.Client | None = None):
        """``http``: an ``httpx.Client`` to send through instead (e.g. starlette's TestClient of the app)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = retries
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def score(self, items: Sequence[dict], aggregate: str = "min") -> list[dict]:
        """``items``: [{"prompt": str, "steps": [str, ...]}]; returns [{"step_scores", "score"}]."""
        body = {"items": [{"prompt": it["prompt"], "steps": list(it["steps"])} for it in items],
                "aggregate": aggregate}
        return self._post("/score", body)["results"]

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
                resp = self._http.post(path, json=body)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if resp.status_code in (429, 503) and attempt < self.retries:
                    pass  # overloaded: back off and retry
                else:
                    if resp.status_code >= 400:
                        raise RuntimeError(f"POST {path} -> {resp.status_code}: {resp.text[:500]}")
                    return resp.json()
            time.sleep(0.2 * 2**attempt)
        raise RuntimeError(f"POST {path} failed after {self.retries + 1} attempts")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PRMClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
