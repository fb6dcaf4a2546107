"""``prm generate-server``: an OpenAI-compatible generator over a local causal LM (the embedded SmolLM2 by default).

The small, CPU-friendly counterpart of vLLM for ``prm proxy`` and ``prm label --completer openai``:
``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``,
decoded by ``prm.generation.HFCompleter`` (per-sample seeds, shared-prefix KV). Requests that arrive
while the model is busy wait and are decoded together in one batch (same sampling settings), which
is what makes a beam's or particles' concurrent step requests cheap on a CPU.

Sampling follows vLLM's meanings: ``n`` samples, sample j seeded ``seed + j``, ``stop`` strings cut
the text (default: the few-shot format's ends, a blank line and the next ``Question:``), and a line
stating "the answer is ..." ends a sample. A chat request is rendered as the few-shot completion
prompt (``data_tools.labelling.render_prefix``: worked examples, the last user message as the
question, a final assistant message's lines as the steps so far), not with the model's chat
template: measured here, SmolLM2-135M reasons far better that way (DESIGN.md). ``usage`` counts the
prompt's tokens once and, per sample, every token sampled (the one that hit a stop string included).

Not promised: streaming, logprobs, top_p, penalties, or tokens identical to a vLLM run.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass

from data_tools.completers.protocol import STOP, RolloutRequest
from data_tools.flags import opt, problems
from data_tools.labelling.prompt import render_prefix


@dataclass
class GenerateServerConfig:
    backbone: str = "smollm2-135m"
    """causal LM to serve: smollm2-135m (the embedded default) or a Hugging Face model folder"""
    model_name: str = ""
    """the model's name in requests and /v1/models (empty: the backbone's folder name)"""
    host: str = "127.0.0.1"
    """address to listen on (0.0.0.0: every interface)"""
    port: int = opt(8000, min=0, max=65535)
    """port to listen on"""
    max_tokens: int = opt(256, min=1)
    """longest completion a request may ask for, and the length of one that does not say"""
    temperature: float = opt(0.7, min=0)
    """sampling temperature of a request that does not say"""
    top_k: int = opt(50, min=0)
    """sample from the k most likely tokens (0: the whole vocabulary); a request's top_k wins"""
    bf16: bool = True
    """decode in bfloat16 (fast on CPUs with AVX-512 BF16); --no-bf16 for float32"""
    threads: int = opt(0, min=0)
    """CPU threads of the model (0: torch's default)"""
    max_batch_rows: int = opt(128, min=1)
    """samples decoded together at most (requests that wait are merged up to this)"""

    def problems(self) -> list[str]:
        return problems(self)


class RequestError(ValueError):
    """A request the server refuses (400), with what to change."""


@dataclass(frozen=True)
class _Job:
    prefix: str
    seeds: tuple[int, ...]
    settings: tuple  # (max_tokens, temperature, top_k, stop)
    future: Future


class Batcher:
    """One decode thread; jobs that wait are merged into one ``complete`` call per sampling setting."""

    def __init__(self, completer, max_rows: int = 128):
        self.completer, self.max_rows = completer, max_rows
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="prm-generate")
        self._thread.start()

    def submit(self, prefix: str, seeds: tuple[int, ...], settings: tuple) -> Future:
        future: Future = Future()
        self._jobs.put(_Job(prefix, seeds, settings, future))
        return future

    def _loop(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            rows = len(jobs[0].seeds)
            while rows < self.max_rows:
                try:
                    jobs.append(self._jobs.get_nowait())
                    rows += len(jobs[-1].seeds)
                except queue.Empty:
                    break
            for settings in dict.fromkeys(j.settings for j in jobs):
                self._run([j for j in jobs if j.settings == settings], settings)

    def _run(self, jobs: list[_Job], settings: tuple) -> None:
        c = self.completer
        c.max_new_tokens, c.temperature, c.top_k, c.stop = settings
        try:
            texts = c.complete([RolloutRequest(j.prefix, j.seeds) for j in jobs])
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request, the thread lives on
            for j in jobs:
                j.future.set_exception(exc)
            return
        counts = getattr(c, "last_token_counts", None) or [None] * len(jobs)
        for j, t, k in zip(jobs, texts, counts, strict=True):
            j.future.set_result((t, k))


def _stops(value) -> tuple[str, ...]:
    if value is None:
        return STOP
    stops = (value,) if isinstance(value, str) else value
    if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(f"stop must be a string or a list of non-empty strings, got {value!r}")
    return tuple(stops)


def _number(body: dict, name: str, default, kind, low, high):
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (kind is int and not isinstance(value, int)):
        raise RequestError(f"{name} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if not low <= value <= high:
        raise RequestError(f"{name} must be from {low} to {high}, got {value}")
    return kind(value)


def _chat_prefix(messages) -> str:
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RequestError("messages must be a list of {role, content} objects")
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise RequestError("messages need a user message: the question")
    question = str(messages[users[-1]].get("content") or "")
    steps = [line for m in messages[users[-1] + 1:] if m.get("role") == "assistant"
             for line in str(m.get("content") or "").splitlines() if line.strip()]
    return render_prefix(question, steps)


def make_app(completer, config: GenerateServerConfig, model_name: str):
    """The ASGI app over a loaded completer (``prm.generation.HFCompleter`` or anything with its attributes)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    batcher = Batcher(completer, config.max_batch_rows)
    tokenizer = completer.tokenizer

    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    async def generate(request: Request, chat: bool) -> JSONResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise RequestError("the body must be a JSON object")
            if body.get("stream"):
                raise RequestError("stream is not supported by prm generate-server")
            prefix = _chat_prefix(body.get("messages")) if chat else body.get("prompt")
            if isinstance(prefix, list) and len(prefix) == 1:
                prefix = prefix[0]
            if not isinstance(prefix, str):
                raise RequestError("prompt must be a string")
            n = _number(body, "n", 1, int, 1, 128)
            seed = _number(body, "seed", int(time.time_ns() % 2**31), int, 0, 2**63 - 1)
            settings = (_number(body, "max_tokens", config.max_tokens, int, 1, config.max_tokens),
                        _number(body, "temperature", config.temperature, float, 0, 10),
                        _number(body, "top_k", config.top_k, int, 0, 10**6), _stops(body.get("stop")))
        except ValueError as exc:  # RequestError, or a body that is not JSON
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error", "code": None}}, 400)
        texts, counts = await asyncio.wrap_future(batcher.submit(prefix, tuple(seed + j for j in range(n)), settings))
        counts = counts or [n_tokens(t) + 1 for t in texts]  # a completer that does not count: re-tokenize
        finish = ["length" if k >= settings[0] else "stop" for k in counts]
        completion_tokens = sum(counts)
        choices = [{"index": j, "logprobs": None, "finish_reason": f,
                    **({"message": {"role": "assistant", "content": t}} if chat else {"text": t})}
                   for j, (t, f) in enumerate(zip(texts, finish, strict=True))]
        prompt_tokens = n_tokens(prefix)
        return JSONResponse({
            "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24],
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model_name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}})

    async def completions(request: Request) -> JSONResponse:
        return await generate(request, chat=False)

    async def chat_completions(request: Request) -> JSONResponse:
        return await generate(request, chat=True)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                                         "owned_by": "prm-toolkit"}]})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]),
                             Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"]), Route("/health", health, methods=["GET"])])


def load(config: GenerateServerConfig):
    """(completer, served model name) for the settings: loads the backbone (torch, transformers)."""
    from pathlib import Path

    from prm.generation import load_completer

    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    completer = load_completer(config.backbone, config.max_tokens, config.temperature, bf16=config.bf16,
                               top_k=config.top_k)
    return completer, config.model_name or Path(config.backbone.rstrip("/")).name


def serve(config: GenerateServerConfig, log_level: str = "warning") -> None:
    import uvicorn

    bad = config.problems()
    if bad:
        raise ValueError("invalid prm generate-server settings: " + "; ".join(bad))
    completer, name = load(config)
    print(f"serving {name} on http://{config.host}:{config.port}/v1 (POST /completions, /chat/completions)",
          flush=True)
    uvicorn.run(make_app(completer, config, name), host=config.host, port=config.port, log_level=log_level)
