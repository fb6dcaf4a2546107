"""Two adjustments to BentoML 1.4's adaptive batcher (``CorkDispatcher``), for a model on CPUs.

BentoML exposes ``max_batch_size`` and ``max_latency_ms`` and nothing else of its batcher; the two
behaviours below, measured with ``benchmarks/load_test.py``, need its internals. Each adjustment
checks that the internal it touches exists and otherwise leaves BentoML alone and logs a warning,
so a BentoML upgrade can only lose the adjustment, never break the service. It runs in the
inference worker's process (nothing else there batches).

- **The learned hold.** The batcher holds a batch open for more calls for about the mean queueing
  delay of its last 50 batches. After a burst that mean is the burst's queueing, and it fades by
  ~5% per 50 calls, so lone requests kept waiting for it: on the tiny test model 0.19 s instead of
  0.02 s, still 0.17 s sixty requests later. On a CPU, where cost is close to linear in tokens,
  holding buys little; calls that arrive while a batch runs are merged into the next one anyway.
  ``max_hold_s`` caps it (``Optimizer.wait``); 0 sends a batch as soon as the model is free.
- **The polling tick.** While a batch runs and calls are queued, the batcher polls every 1 ms. In
  the inference worker that loop took ~20 ms of CPU per scored solution next to the model's ~190
  (demo model, one thread), CPU that a 2-core machine takes from the model. ``tick_s`` sets it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def tune_batcher(max_hold_s: float, tick_s: float) -> list[str]:
    """Apply both adjustments; returns the ones applied."""
    try:
        from bentoml._internal.marshal import dispatcher
    except ImportError:
        dispatcher = None
    applied = []
    optimizer = getattr(dispatcher, "Optimizer", None)
    refresh = getattr(optimizer, "trigger_refresh", None)
    if refresh is not None:
        original = getattr(refresh, "__wrapped__", refresh)

        def trigger_refresh(self):
            original(self)
            self.wait = min(self.wait, max_hold_s)

        trigger_refresh.__wrapped__ = original
        optimizer.trigger_refresh = trigger_refresh
        applied.append("max_hold")
    cork = getattr(dispatcher, "CorkDispatcher", None)
    if isinstance(getattr(cork, "TICKET_INTERVAL", None), float):
        cork.TICKET_INTERVAL = tick_s
        applied.append("tick")
    if len(applied) < 2:
        log.warning("BentoML's batcher internals differ from 1.4's: applied only %s", applied or "nothing")
    return applied
