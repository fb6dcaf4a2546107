"""PRMClient and AsyncPRMClient: client-side batching keeps order, overload is retried, 4xx is not."""

import asyncio
import json
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.client import AsyncPRMClient, PRMClient, ServiceError


def flaky_app(fail_first: int):
    """/score answers 503 to its first ``fail_first`` requests, 400 to empty prompts, else scores by length."""
    seen = {"requests": 0, "batch_sizes": []}

    async def score(request):
        seen["requests"] += 1
        body = await request.json()
        if seen["requests"] <= fail_first:
            return JSONResponse({"error": "busy"}, status_code=503)
        if any(not it["prompt"] for it in body["items"]):
            return JSONResponse({"error": "empty prompt"}, status_code=400)
        seen["batch_sizes"].append(len(body["items"]))
        return JSONResponse({"results": [{"step_scores": [len(it["prompt"]) / 100], "score": len(it["prompt"]) / 100}
                                         for it in body["items"]]})

    return Starlette(routes=[Route("/score", score, methods=["POST"])]), seen


ITEMS = [{"prompt": "p" * n, "steps": ["s"]} for n in range(1, 12)]


def test_sync_client_batches_in_order_and_retries_overload():
    app, seen = flaky_app(fail_first=2)
    client = PRMClient(batch_size=4, retries=2, http=TestClient(app))
    results = client.score(ITEMS)
    assert [r["score"] for r in results] == [n / 100 for n in range(1, 12)]
    assert seen["batch_sizes"] == [4, 4, 3] and seen["requests"] == 5  # two 503s retried


def test_sync_client_gives_up_after_its_retries_and_never_retries_4xx():
    app, seen = flaky_app(fail_first=10)
    client = PRMClient(retries=1, http=TestClient(app))
    with pytest.raises(ServiceError) as err:
        client.score(ITEMS[:2])
    assert err.value.status == 503 and seen["requests"] == 2
    app, seen = flaky_app(fail_first=0)
    client = PRMClient(retries=3, http=TestClient(app))
    with pytest.raises(ServiceError, match="empty prompt"):
        client.score([{"prompt": "", "steps": ["a"]}])
    assert seen["requests"] == 1


def test_async_client_sends_batches_concurrently_and_keeps_order():
    app, seen = flaky_app(fail_first=1)

    async def run():
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")
        async with AsyncPRMClient(batch_size=3, max_concurrency=2, http=http) as client:
            return await client.score(ITEMS)

    results = asyncio.run(run())
    assert [r["score"] for r in results] == [n / 100 for n in range(1, 12)]
    assert sorted(seen["batch_sizes"]) == [2, 3, 3, 3] and seen["requests"] == 5


def overloaded_once(retry_after: str):
    """A MockTransport that answers its first request 429 with ``Retry-After``, then scores; records when."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": retry_after}, json={"error": "busy"})
        items = json.loads(request.content)["items"]
        return httpx.Response(200, json={"results": [{"step_scores": [0.5], "score": 0.5} for _ in items]})

    return httpx.MockTransport(handler), seen


def test_sync_client_waits_at_least_what_retry_after_asks():
    transport, seen = overloaded_once("1")
    client = PRMClient(retries=2, backoff_s=0.01, http=httpx.Client(transport=transport, base_url="http://t"))
    assert [r["score"] for r in client.score(ITEMS[:2])] == [0.5, 0.5]
    assert len(seen) == 2 and seen[1] - seen[0] >= 1.0


def test_async_client_waits_at_least_what_retry_after_asks():
    transport, seen = overloaded_once("1")

    async def run():
        async with AsyncPRMClient(retries=2, backoff_s=0.01,
                                  http=httpx.AsyncClient(transport=transport, base_url="http://t")) as client:
            return await client.score(ITEMS[:2])

    assert [r["score"] for r in asyncio.run(run())] == [0.5, 0.5]
    assert len(seen) == 2 and seen[1] - seen[0] >= 1.0


def test_retry_after_is_capped_by_max_wait():
    transport, seen = overloaded_once("3600")
    client = PRMClient(retries=1, backoff_s=0.01, max_wait_s=0.2,
                       http=httpx.Client(transport=transport, base_url="http://t"))
    client.score(ITEMS[:1])
    assert 0.2 <= seen[1] - seen[0] < 5
