"""Next steps from any OpenAI-compatible generator: the ``Propose`` callable the search strategies call.

A step is the text up to the next newline: the generator is asked with the stop sequence ``"\\n"``
and at most ``max_step_tokens`` tokens, and whatever follows a newline is cut off for servers that
ignore ``stop``. ``completions`` asks for the raw continuation of the few-shot prompt ``prm label``
rolls out (``data_tools.labelling.render_prefix``: worked examples, the question, the steps so far),
the rendering the PRM's training data was generated in; ``chat`` sends the question as the user turn
and the steps so far as an assistant turn to continue (vLLM's and SGLang's ``continue_final_message``).

The ``n`` samples of a call go in one request (``n``, ``seed``: sample j uses seed + j on vLLM); a
server that answers fewer (llama.cpp) is asked again for the rest; ``batch`` (which the strategies
call to extend several prefixes at once) sends its requests concurrently. Seeds derive from (the request's
seed, the steps so far, how often that prefix was asked), so a search is reproducible whatever order
its calls come in. Generator tokens are read from the answers' ``usage`` (prompt tokens once per
request, completion tokens shared among its choices by length); a server that reports none counts 0.

Failures never hang and never leak a traceback: each call is bounded by the request's ``Deadline``;
connection errors, timeouts, 429 and 5xx are retried; what remains becomes a ``ProxyError`` with an
OpenAI-style status, type and code. Imports httpx, the standard library and ``data_tools`` only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from typing import Any

import httpx

from data_tools.labelling.prompt import render_prefix
from data_tools.retry import Retry, RetryPolicy, call, parse_retry_after
from serving.proxy.protocol import ProxyError
from serving.search import Proposal


class Deadline:
    """The time one request may still take; ``check`` raises the 504 once it has passed."""

    def __init__(self, seconds: float):
        self.seconds, self.end = seconds, time.monotonic() + seconds
        self.cancelled = threading.Event()

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def check(self, waiting_for: str) -> float:
        """Seconds left; ``ProxyError`` (504) when none are, or when the request was given up."""
        left = self.remaining()
        if left <= 0 or self.cancelled.is_set():
            raise deadline_error(self.seconds, waiting_for)
        return left

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.remaining()))


def deadline_error(seconds: float, waiting_for: str) -> ProxyError:
    return ProxyError(504, f"the request's deadline of {seconds:g} s passed while waiting for {waiting_for} "
                      "(prm proxy --timeout-s)", "timeout", "deadline_exceeded")


class StepProposer:
    """``propose(prompt, steps, n) -> [Proposal]`` over one generator, for one request; counts its tokens."""

    def __init__(self, http: httpx.Client, base_url: str, model: str, *, api: str = "completions",
                 max_step_tokens: int = 64, temperature: float = 0.7, seed: int = 0, deadline: Deadline,
                 backend_timeout_s: float = 60.0, retries: int = 2, headers: dict | None = None, pool=None):
        self.http, self.url, self.model, self.api = http, base_url.rstrip("/"), model, api
        self.max_step_tokens, self.temperature, self.seed = max_step_tokens, temperature, seed
        self.deadline, self.backend_timeout_s, self.retries = deadline, backend_timeout_s, retries
        self.headers, self.pool = headers or {}, pool  # pool: a concurrent.futures executor for batch()
        self.prompt_tokens = self.completion_tokens = self.calls = 0
        self._asked: Counter = Counter()
        self._lock = threading.Lock()

    def __call__(self, prompt: str, steps: list[str], n: int) -> list[Proposal]:
        return self._sample(prompt, list(steps), n, self._next_seed(prompt, steps))

    def batch(self, prompt: str, requests: list[tuple[list[str], int]]) -> list[list[Proposal]]:
        """Several prefixes at once (the strategies call this when extending beams or particles): the
        requests go out concurrently, so a batching server (vLLM, SGLang) decodes them together."""
        seeds = [self._next_seed(prompt, steps) for steps, _ in requests]  # in order: reproducible
        if len(requests) <= 1 or self.pool is None:
            return [self._sample(prompt, list(s), n, seed) for (s, n), seed in zip(requests, seeds, strict=True)]
        futures = [self.pool.submit(self._sample, prompt, list(s), n, seed)
                   for (s, n), seed in zip(requests, seeds, strict=True)]
        return [f.result() for f in futures]

    def _next_seed(self, prompt: str, steps: list[str]) -> int:
        with self._lock:
            key = (prompt, tuple(steps))
            visit = self._asked[key]
            self._asked[key] += 1
        return _seed(self.seed, prompt, steps, visit)

    def _sample(self, prompt: str, steps: list[str], n: int, seed: int) -> list[Proposal]:
        out: list[Proposal] = []
        while len(out) < n:  # a server that answers fewer than n (llama.cpp) is asked again for the rest
            out += self._request(prompt, steps, n - len(out), (seed + len(out)) & 0x7FFFFFFF)
        return out[:n]

    def _body(self, prompt: str, steps: list[str], n: int, seed: int) -> tuple[str, dict]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_step_tokens, "temperature": self.temperature,
                                "n": n, "seed": seed, "stop": ["\n"]}
        if self.api == "completions":
            return "/completions", {**body, "prompt": render_prefix(prompt, steps)}
        messages = [{"role": "user", "content": prompt}]
        if steps:
            messages.append({"role": "assistant", "content": "".join(s + "\n" for s in steps)})
        return "/chat/completions", {**body, "messages": messages, "continue_final_message": bool(steps),
                                     "add_generation_prompt": not steps}

    def _request(self, prompt: str, steps: list[str], n: int, seed: int) -> list[Proposal]:
        path, body = self._body(prompt, steps, n, seed)
        url = self.url + path

        def send(attempt: int) -> dict | Retry:
            left = self.deadline.check("the generator")
            timeout = min(self.backend_timeout_s, left)
            try:
                resp = self.http.post(url, json=body, headers=self.headers, timeout=timeout)
            except httpx.TimeoutException:
                if self.deadline.remaining() <= 0:
                    raise deadline_error(self.deadline.seconds, "the generator") from None
                return Retry(reason="timeout", last=ProxyError(
                    504, f"the generator at {url} did not answer within {timeout:.3g} s", "timeout", "generator_timeout"))
            except httpx.TransportError as exc:
                return Retry(reason="transport", last=ProxyError(
                    502, f"the generator at {url} is unreachable ({type(exc).__name__}: {exc}); check that it runs "
                    "and prm proxy --generator-url", "api_error", "generator_unavailable"))
            return _outcome(url, resp, n)

        with self._lock:
            self.calls += 1
        outcome = call(send, RetryPolicy(retries=self.retries, base_s=0.2, max_s=5.0), sleep=self.deadline.sleep)
        if isinstance(outcome, Retry):
            raise outcome.last
        return self._proposals(outcome)

    def _proposals(self, answer: dict) -> list[Proposal]:
        choices = sorted(answer["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        texts = [_step(_choice_text(c, self.api)) for c in choices]
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        prompt_tokens = token_count(usage.get("prompt_tokens"))
        completion = token_count(usage.get("completion_tokens"))
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion
        return [Proposal(text=t, tokens=k) for t, k in zip(texts, _share(completion, texts), strict=True)]


def _outcome(url: str, resp: httpx.Response, n: int) -> dict | Retry:
    """The answer's JSON with its choices; a Retry (with the error it becomes) or a raised ``ProxyError``."""
    status, text = resp.status_code, resp.text[:300]
    if status == 429:
        return Retry(parse_retry_after(resp.headers.get("retry-after")), "HTTP 429", ProxyError(
            429, f"the generator at {url} is overloaded (429): {text}", "rate_limit_error", "generator_overloaded"))
    if status >= 500:
        return Retry(parse_retry_after(resp.headers.get("retry-after")), f"HTTP {status}", ProxyError(
            502, f"the generator at {url} failed ({status}): {text}", "api_error", "generator_error"))
    if status in (401, 403):
        raise ProxyError(502, f"the generator at {url} refused the proxy's credentials ({status}); set the key in "
                         "the variable prm proxy --generator-key-env names", "api_error", "generator_auth")
    if status == 404:
        raise ProxyError(404, f"the generator at {url} answered 404 (no such model or endpoint): {text}",
                         "invalid_request_error", "model_not_found")
    if status >= 400:
        raise ProxyError(400, f"the generator at {url} rejected the request ({status}): {text}",
                         "invalid_request_error", "generator_rejected")
    try:
        answer = resp.json()
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list) or not answer["choices"]:
            raise ValueError("no choices")
        return answer
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return Retry(reason="bad answer", last=ProxyError(
            502, f"the generator at {url} answered 200 without a readable completion ({exc}): {text}", "api_error",
            "generator_bad_response"))


def _choice_text(choice: Any, api: str) -> str:
    try:
        text = choice["text"] if api == "completions" else choice["message"]["content"]
    except (KeyError, TypeError):
        text = None
    if not isinstance(text, str):
        raise ProxyError(502, f"the generator answered a choice without its text: {str(choice)[:200]}", "api_error",
                         "generator_bad_response")
    return text


def _step(text: str) -> str:
    """The text up to the first newline, for servers that ignore ``stop``."""
    return text.split("\n", 1)[0].strip()


def token_count(value: Any) -> int:
    """A token count from an answer's JSON: a positive int, else 0 (a server that reports none counts 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _share(total: int, texts: list[str]) -> list[int]:
    """``total`` tokens split among the texts in proportion to their length (the shares add up to ``total``)."""
    weights = [len(t) + 1 for t in texts]
    shares = [total * w // sum(weights) for w in weights]
    for i in range(total - sum(shares)):
        shares[i % len(shares)] += 1
    return shares


def _seed(seed: int, prompt: str, steps: list[str], visit: int) -> int:
    key = "\x1f".join([str(seed), str(visit), prompt, *steps]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & 0x7FFFFFFF
