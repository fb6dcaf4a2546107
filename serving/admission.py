"""Admission control for the scoring service: refuse at once what would only wait in the queue.

BentoML's batcher bounds its queue by dropping the OLDEST queued call once its expected latency
passes ``max_latency_ms``, so under overload a refusal comes after that call has already waited
most of the budget. ``Admission`` decides at the door instead: it counts the solutions sent to the
model and not yet answered, measures the rate at which the model has been answering them (while it
had work), and refuses a new request when the solutions ahead of it plus its own would take longer
than ``max_wait_s`` at that rate. A request that arrives when nothing is waiting is always admitted,
however large, and so is everything before the first measurement. It counts solutions, not
requests, so one 256-solution request weighs what 256 single ones do.

Pure Python, one event loop (no locks); ``clock`` is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Admission:
    def __init__(self, max_wait_s: float, horizon_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        """``horizon_s``: the rate follows roughly the last this-many seconds of busy time."""
        self.max_wait, self.horizon, self.clock = max_wait_s, horizon_s, clock
        self.waiting = 0  # solutions sent to the model, not answered yet
        self._answered = 0.0  # solutions answered during `_busy` (both decayed together)
        self._busy = 0.0  # seconds during which something was waiting
        self._last = clock()

    def _advance(self) -> None:
        now = self.clock()
        if self.waiting:
            self._busy += now - self._last
        self._last = now
        if self._busy > self.horizon:  # keep the recent rate: scale both down to the horizon
            keep = self.horizon / self._busy
            self._busy, self._answered = self.horizon, self._answered * keep

    @property
    def rate(self) -> float | None:
        """Solutions answered per busy second, or None before the first answer."""
        return self._answered / self._busy if self._answered and self._busy > 0 else None

    def expected_wait(self, n: int) -> float | None:
        """Seconds until ``n`` more solutions would be answered, at the measured rate."""
        self._advance()
        rate = self.rate
        return (self.waiting + n) / rate if rate else None

    def admit(self, n: int) -> float | None:
        """Admit ``n`` solutions (returns None) or refuse them (returns the expected wait in seconds)."""
        wait = self.expected_wait(n)
        if self.waiting and wait is not None and wait > self.max_wait:
            return wait
        self.waiting += n
        return None

    def release(self, n: int, answered: bool = True) -> None:
        """``n`` admitted solutions are done (``answered``: the model scored them)."""
        self._advance()
        self.waiting -= n
        if answered:
            self._answered += n
