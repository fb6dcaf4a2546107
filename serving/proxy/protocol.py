"""The OpenAI wire format of ``prm proxy``: reading a chat request, writing a completion, its chunks, errors.

Pure functions over plain data (no server, no HTTP client), so each is tested alone.

A request names its search in the body's extra fields (``strategy``, ``budget``, ``seed``,
``return_trace``, ``aggregate``, ``max_steps``, ``options``; optillm's ``optillm_approach`` is read as
``strategy``), or, for clients that cannot add fields, as a prefix of the model name the way optillm
does it: the name is split at ``-`` and leading parts that name a strategy are the strategy, the rest
is the generator's model (``beam-smollm2`` is beam search over ``smollm2``). One extension: a
number right after the strategy is its budget (``beam-8-smollm2``). optillm's ``&``/``|``
combinations of approaches are refused: one search per request. Body fields win over the prefix.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.proxy.config import AGGREGATES, ProxyConfig


class ProxyError(Exception):
    """An error the client gets as an OpenAI-style body: ``{"error": {"message", "type", "code"}}``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ProxyError:
    return ProxyError(400, message, "invalid_request_error", code, param)


@dataclass
class SearchRequest:
    """What one chat request asks the proxy to do."""

    prompt: str
    """the problem: the last user message"""
    steps: list[str]
    """steps already given (a final assistant message to continue), usually none"""
    model: str
    """the generator's model ('' when the request named only a strategy)"""
    strategy: str
    budget: int
    seed: int = 0
    aggregate: str = "min"
    max_steps: int = 12
    temperature: float = 0.7
    return_trace: bool = False
    stream: bool = False
    include_usage: bool = False
    options: dict = field(default_factory=dict)
    """strategy options passed on to run_search (e.g. beam_width)"""


def parse_model(model: str, strategies: Sequence[str]) -> tuple[str | None, int | None, str]:
    """(strategy or None, budget or None, the generator's model) from an optillm-style model name."""
    parts = model.split("-")
    head = parts[0]
    if ("&" in head or "|" in head) and any(p in strategies for p in head.replace("|", "&").split("&")):
        raise bad_request(f"model {model!r} combines strategies ({head}); this proxy runs one search per request: "
                          "name one, e.g. beam-8-MODEL", "model", "invalid_strategy")
    if head not in strategies:
        return None, None, model
    rest = parts[1:]
    budget = int(rest.pop(0)) if rest and rest[0].isdigit() else None
    if rest and rest[0] in strategies:
        raise bad_request(f"model {model!r} names two strategies ({head}, {rest[0]}); this proxy runs one search "
                          "per request", "model", "invalid_strategy")
    return head, budget, "-".join(rest)


def message_text(message: dict) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise bad_request(f"message content must be a string or a list of parts, got {type(content).__name__}",
                      "messages")


def parse_request(body: Any, config: ProxyConfig, strategies: Sequence[str]) -> SearchRequest:
    """A ``SearchRequest`` from a chat-completions body; ``ProxyError`` (400) naming what is wrong."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object with model and messages")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise bad_request("messages must be a non-empty list of {role, content} objects", "messages")
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise bad_request("messages need a user message: the problem to solve", "messages")
    prompt = message_text(messages[users[-1]]).strip()
    if not prompt:
        raise bad_request("the last user message is empty", "messages")
    tail = messages[users[-1] + 1:]
    steps = [s for m in tail if m.get("role") == "assistant" for s in message_text(m).splitlines() if s.strip()]
    model = body.get("model", "")
    if not isinstance(model, str):
        raise bad_request("model must be a string", "model")
    strategy, budget, upstream = parse_model(model, strategies)
    strategy = body.get("strategy") or body.get("optillm_approach") or strategy or config.strategy
    if strategy not in strategies:
        raise bad_request(f"unknown strategy {strategy!r}; choose one of {', '.join(strategies)}", "strategy",
                          "invalid_strategy")
    budget = _int(body, "budget", budget or config.budget, 1, config.max_budget)
    if _int(body, "n", 1, 1, 1) != 1:
        raise bad_request("n must be 1: the proxy returns the one answer its search chose", "n")
    aggregate = body.get("aggregate", config.aggregate)
    if aggregate not in AGGREGATES:
        raise bad_request(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}", "aggregate")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise bad_request("options must be an object of strategy options, e.g. {\"beam_width\": 2}", "options")
    temperature = body.get("temperature")
    if temperature is None:
        temperature = config.temperature
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
        raise bad_request(f"temperature must be a number >= 0, got {temperature!r}", "temperature")
    stream_options = body.get("stream_options") or {}
    return SearchRequest(
        prompt=prompt, steps=steps, model=upstream, strategy=strategy, budget=budget,
        seed=_int(body, "seed", 0, 0, 2**63 - 1), aggregate=aggregate,
        max_steps=_int(body, "max_steps", config.max_steps, 1, config.max_steps), temperature=float(temperature),
        return_trace=bool(body.get("return_trace", False)), stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")), options=options)


def _int(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}, got {value!r}", name)
    return value


# --- answers -----------------------------------------------------------------------------------------

def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def completion(request: SearchRequest, model: str, result: Any, usage: dict, cid: str | None = None) -> dict:
    """The chat completion of a finished search (``result``: a ``serving.search.SearchResult``)."""
    body = {"id": cid or completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer_text(result)},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage, "search": search_summary(request, result)}
    if request.return_trace:
        body["search_trace"] = result.trace
    return body


def answer_text(result: Any) -> str:
    return "\n".join(result.steps)


def search_summary(request: SearchRequest, result: Any) -> dict:
    return {"strategy": request.strategy, "budget": request.budget, "seed": request.seed,
            "aggregate": request.aggregate, "score": result.score, "answer": result.answer, "steps": len(result.steps)}


def usage(prompt_tokens: int, completion_tokens: int, result: Any, prm_tokens: int = 0) -> dict:
    """OpenAI's usage (generator tokens) plus what the PRM did: calls, steps scored, and the tokens it read
    (each scored solution's length as the PRM renders it, summed over calls; 0 from a service that does
    not report them). ``total_tokens`` stays the generator's, as OpenAI clients read it."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prm_calls": result.prm_calls, "prm_steps_scored": result.prm_steps_scored, "prm_tokens": prm_tokens}


def chunks(request: SearchRequest, model: str, result: Any, usage_: dict) -> list[dict]:
    """The ``chat.completion.chunk`` events of the finished answer: the role, one per step, the finish."""
    cid, created = completion_id(), int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": step + ("\n" if i < len(result.steps) - 1 else "")}) for i, step in enumerate(result.steps)]
    extra = {"search": search_summary(request, result)}
    if request.return_trace:
        extra["search_trace"] = result.trace
    out.append(chunk({}, "stop", **extra))
    if request.include_usage:
        out.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": usage_})
    return out


def sse(events: list[dict]) -> bytes:
    """Server-sent events: one ``data:`` line per event, then ``data: [DONE]``."""
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def models_list(models: Sequence[str], strategies: Sequence[str]) -> dict:
    """``GET /v1/models``: each generator model, and each as ``STRATEGY-MODEL``."""
    names = [*models, *(f"{s}-{m}" for m in models for s in strategies)]
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "prm-proxy"}
                                       for n in names]}
