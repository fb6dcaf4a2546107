"""Retrying a request: exponential backoff with full jitter, ``Retry-After``, and the loop, sync and async.

The caller writes ``send(attempt)``: one try, returning either the finished value or a ``Retry``
(try again; ``retry_after`` is what the server asked for, if anything). Exceptions of the types in
``RetryPolicy.retry_on`` (transport errors) are tried again too; which statuses are retryable or fatal
is the caller's decision, made in ``send`` (raise for fatal ones). ``call`` and ``acall`` drive
``send`` the same way, sharing ``RetryPolicy.wait``: after try ``k`` (0-based) the wait is drawn
uniformly from ``[0, min(max_s, base_s * 2**k)]`` (full jitter, so clients that failed together do
not come back together), raised to the server's ``Retry-After`` when it asked for longer, and never
more than ``max_s``. When the tries run out, the last ``Retry`` is returned (the caller decides what a
request that failed for good becomes) and the last exception re-raised.

Standard library only: the light HTTP client (``serving.client``) uses it as well as the rollout
backends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """The outcome of a try that should be tried again."""

    retry_after: float | None = None
    """seconds the server asked to wait (its Retry-After header), None when it did not say"""
    reason: str = ""
    """what went wrong, for logs ("HTTP 429", "timed out")"""
    last: Any = None
    """what the try got (e.g. the response), for the caller once the tries run out"""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between tries (see the module docstring)."""

    retries: int = 2
    """tries after the first one"""
    base_s: float = 0.5
    """longest wait after the first try; it doubles per try"""
    max_s: float = 30.0
    """longest wait of all, a server's Retry-After included"""
    retry_on: tuple[type[BaseException], ...] = ()
    """exception types that are tried again (transport errors); others propagate at once"""

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait after try ``attempt`` (0-based): full jitter, at least ``retry_after``, at most ``max_s``."""
        wait = random.uniform(0.0, min(self.max_s, self.base_s * 2 ** attempt))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(self.max_s, wait)

    def wait(self, attempt: int, retry_after: float | None = None) -> float | None:
        """The wait before the next try, or None when try ``attempt`` was the last one allowed."""
        return None if attempt >= self.retries else self.delay(attempt, retry_after)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date); None when absent or unreadable.

    A date in the past asks for 0. ``now`` (a Unix time) is for tests.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=timezone.utc)
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return max(0.0, (when - now_dt).total_seconds())


def _wait(policy: RetryPolicy, attempt: int, outcome: object) -> float | None:
    """The decision both drivers share: the wait before the next try, or None to return ``outcome`` now."""
    return policy.wait(attempt, outcome.retry_after) if isinstance(outcome, Retry) else None


async def acall(send: Callable[[int], Awaitable[T | Retry]], policy: RetryPolicy,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> T | Retry:
    """``call`` for a coroutine ``send``; waits with ``asyncio.sleep``."""
    attempt = 0
    while True:
        try:
            outcome = await send(attempt)
        except policy.retry_on:
            if attempt >= policy.retries:
                raise
            outcome = Retry()
        wait = _wait(policy, attempt, outcome)
        if wait is None:
            return outcome
        await sleep(wait)
        attempt += 1


def call(send: Callable[[int], T | Retry], policy: RetryPolicy,
         sleep: Callable[[float], None] = time.sleep) -> T | Retry:
    """``send(0)``, ``send(1)``, ... until one returns a value that is not a ``Retry`` or the tries run out.

    The same loop as ``acall``: a coroutine whose awaits never suspend (``send`` and ``sleep`` are
    plain calls here) runs to its end in one step, so no event loop is needed, and none is disturbed
    when the caller is inside one.
    """
    async def asend(attempt: int) -> T | Retry:
        return send(attempt)

    async def asleep(seconds: float) -> None:
        sleep(seconds)

    loop = acall(asend, policy, asleep)
    try:
        loop.send(None)
    except StopIteration as finished:
        return finished.value
    loop.close()
    raise RuntimeError("retry.call: the loop suspended, which plain calls never do")
