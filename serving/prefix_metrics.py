"""The scorer's prefix cache on the service's ``/metrics``: Prometheus counters and a gauge.

    prm_prefix_cache_lookups_total, _hits_total, _misses_total   solutions looked up, with a cached prefix, without
    prm_prefix_cache_tokens_reused_total                         tokens whose keys/values came from the cache
    prm_prefix_cache_tokens_computed_total                       tokens the model computed (any backend)
    prm_prefix_cache_evictions_total                             cache nodes dropped for the budget
    prm_prefix_cache_bytes                                       bytes the cache holds now

Counters grow by what ``Scorer.cache_stats`` gained since the last call. ``prometheus_client`` is imported
when the first ``CacheMetrics`` is built, in the worker, after BentoML has set up its multiprocess
directory (BentoML's own advice: importing it earlier hides the metrics from ``/metrics``); the metrics
are made once per process, however many services are built in it.
"""

from __future__ import annotations

import threading

COUNTERS = {"lookups": "solutions looked up in the prefix cache", "hits": "solutions with a cached prefix",
            "misses": "solutions without a cached prefix", "tokens_reused": "tokens whose keys/values came from the cache",
            "tokens_computed": "tokens the model computed", "evictions": "prefix cache nodes evicted for the budget"}
_made: dict = {}
_lock = threading.Lock()


def _metrics() -> dict:
    with _lock:
        if not _made:
            from prometheus_client import Counter, Gauge

            for key, doc in COUNTERS.items():
                _made[key] = Counter(f"prm_prefix_cache_{key}", doc)
            _made["bytes"] = Gauge("prm_prefix_cache_bytes", "bytes the prefix cache holds", multiprocess_mode="livesum")
        return _made


class CacheMetrics:
    def __init__(self, scorer):
        self.scorer, self.last = scorer, scorer.cache_stats
        _metrics()

    def publish(self) -> None:
        """Add what the counters gained since the last call; set the gauge."""
        now, metrics = self.scorer.cache_stats, _metrics()
        for key in COUNTERS:
            gained = now.get(key, 0) - self.last.get(key, 0)
            if gained > 0:
                metrics[key].inc(gained)
        if "bytes" in now:
            metrics["bytes"].set(now["bytes"])
        self.last = now
