"""A small OpenAI-compatible server for tests: ``/v1/completions`` and ``/v1/chat/completions`` served by
any completer (the tiny model through ``HFCompleter``), on 127.0.0.1 only, in a background thread.

Misbehaviour on demand, counted by arrival (every request, retries included, in the order they
arrive): ``fail_every=k`` answers every k-th request with a 500 or a 429 (alternating); ``slow_every=k``
holds every k-th request ``delay_s`` seconds before answering (longer than a client's timeout, so the
client gives up and retries). ``log`` keeps one entry per request: what was asked and how it was
answered, so tests can count retries and timeouts from the server's side.

Sampling follows vLLM's meaning of ``seed`` with ``n`` > 1: sample j uses ``seed + j``. A chat request
is rendered as the few-shot completion prompt would be (question, then the assistant's steps), so
chat and completion requests for the same prefix draw the same text.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from data_tools.labelling import render_prefix
from data_tools.rollouts import RolloutRequest


@dataclass
class Behaviour:
    fail_every: int = 0
    slow_every: int = 0
    delay_s: float = 0.0
    status_every: int = 0  # every k-th request answered with `status` (a non-retryable code, e.g. 400 or 404)
    status: int = 400


@dataclass
class ServerLog:
    entries: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **entry) -> int:
        with self.lock:
            self.entries.append(entry)
            return len(self.entries)

    def count(self, outcome: str) -> int:
        return sum(e["outcome"] == outcome for e in self.entries)


# One lock for every server in the process: a completer is not thread-safe, and tests run several
# servers (a flaky one, a slow one) over the same completer at once.
MODEL_LOCK = threading.Lock()


def make_app(completer, behaviour: Behaviour, log: ServerLog):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def draw(prefix: str, seed: int, n: int) -> list[str]:
        with MODEL_LOCK:
            return completer.complete([RolloutRequest(prefix, tuple(seed + j for j in range(n)))])[0]

    async def serve(request: Request, chat: bool) -> JSONResponse:
        body = await request.json()
        b = behaviour
        arrival = log.add(path=request.url.path, seed=body.get("seed"), n=body.get("n", 1), outcome="pending")
        entry = log.entries[arrival - 1]
        if b.fail_every and arrival % b.fail_every == 0:
            status = 500 if (arrival // b.fail_every) % 2 else 429
            entry["outcome"] = f"fail {status}"
            headers = {"retry-after": "0"} if status == 429 else {}
            return JSONResponse({"error": {"message": "injected failure"}}, status_code=status, headers=headers)
        if b.status_every and arrival % b.status_every == 0:
            entry["outcome"] = f"status {b.status}"
            return JSONResponse({"error": {"message": "injected status"}}, status_code=b.status)
        if b.slow_every and arrival % b.slow_every == 0:
            entry["outcome"] = "slow"
            await asyncio.sleep(b.delay_s)
        if chat:
            messages = body["messages"]
            steps = messages[1]["content"].splitlines() if len(messages) > 1 else []
            prefix = render_prefix(messages[0]["content"], steps)
        else:
            prefix = body["prompt"]
        texts = await run_in_threadpool(draw, prefix, int(body.get("seed", 0)), int(body.get("n", 1)))
        if entry["outcome"] == "pending":
            entry["outcome"] = "ok"
        choices = [({"index": j, "message": {"role": "assistant", "content": t}} if chat else {"index": j, "text": t})
                   for j, t in enumerate(texts)]
        return JSONResponse({"object": "chat.completion" if chat else "text_completion", "model": body.get("model"),
                             "choices": choices})

    async def completions(request: Request) -> JSONResponse:
        return await serve(request, chat=False)

    async def chat_completions(request: Request) -> JSONResponse:
        return await serve(request, chat=True)

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]),
                             Route("/v1/chat/completions", chat_completions, methods=["POST"])])


@contextmanager
def serving(completer, behaviour: Behaviour | None = None) -> Iterator[tuple[str, ServerLog]]:
    """Run the server on a free port of 127.0.0.1; yields (base URL ending in /v1, its request log)."""
    import uvicorn

    log = ServerLog()
    config = uvicorn.Config(make_app(completer, behaviour or Behaviour(), log), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test OpenAI server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", log
    finally:
        server.should_exit = True
        thread.join(timeout=10)
