"""The load generator of ``load_test.py``: closed and open loops against a running service, what each
phase measured (``Recorder``), and BentoML's adaptive-batch metric around a phase."""

from __future__ import annotations

import asyncio
import random
import re
import time

REFUSED = ("429", "503")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


class Recorder:
    """Outcomes of one phase: (status, latency from the scheduled time, scored tokens), and how late
    the generator itself sent each request (its own lag, were it short of CPU)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, int]] = []
        self.lags: list[float] = []
        self.t0 = time.perf_counter()
        self.t_end = self.t0

    def add(self, status: str, latency: float, tokens: int, lag: float) -> None:
        self.rows.append((status, latency, tokens))
        self.lags.append(lag)
        self.t_end = time.perf_counter()

    def summary(self, offered_rps: float | None = None) -> dict:
        elapsed = max(self.t_end - self.t0, 1e-9)
        ok = [lat for s, lat, _ in self.rows if s == "200"]
        refused = [lat for s, lat, _ in self.rows if s in REFUSED]
        counts = {k: 0 for k in ("200", "429", "503", "504", "other")}
        for s, _, _ in self.rows:
            counts[s if s in counts else "other"] += 1
        out = {
            "requests": len(self.rows), "status": counts, "seconds": round(elapsed, 2),
            "ok_rps": round(len(ok) / elapsed, 2),
            "tokens_per_s": round(sum(t for s, _, t in self.rows if s == "200") / elapsed, 1),
            "p50_s": percentile(ok, 50), "p95_s": percentile(ok, 95), "p99_s": percentile(ok, 99),
            "max_s": max(ok) if ok else None,
        }
        if offered_rps is not None:
            out["offered_rps"] = round(offered_rps, 2)
            out["send_lag_p99_s"] = percentile(self.lags, 99)
        if refused:
            out["refusal_p50_s"], out["refusal_p99_s"] = percentile(refused, 50), percentile(refused, 99)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


async def post(http, body: bytes, start: float, tokens: int, rec: Recorder) -> None:
    lag = time.perf_counter() - start
    try:
        resp = await http.post("/score", content=body, headers={"content-type": "application/json"})
        status = str(resp.status_code)
    except Exception:  # client timeout, reset connection: counted as "other"  # noqa: BLE001
        status = "error"
    rec.add(status, time.perf_counter() - start, tokens, lag)


async def closed_loop(http, bodies, concurrency: int, seconds: float, max_requests: int,
                      min_requests: int = 0) -> Recorder:
    """C workers, each sending its next request as soon as its last one is answered: for ``seconds``
    and at least ``min_requests`` (but at most 3 x ``seconds``), never more than ``max_requests``."""
    rec, sent = Recorder(), 0
    stop, hard_stop = rec.t0 + seconds, rec.t0 + 3 * seconds

    def more() -> bool:
        now = time.perf_counter()
        return sent < max_requests and now < hard_stop and (now < stop or sent < min_requests)

    async def worker(k: int) -> None:
        nonlocal sent
        i = k
        while more():
            sent += 1
            body, tokens = bodies[i % len(bodies)]
            await post(http, body, time.perf_counter(), tokens, rec)
            i += concurrency

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return rec


async def open_loop(http, bodies, rate: float, seconds: float, min_requests: int, max_requests: int,
                    arrivals: str, rng: random.Random) -> Recorder:
    """Fire requests at ``rate`` per second on a schedule fixed in advance, never waiting for answers:
    ``seconds`` worth, but at least ``min_requests`` (a p99 needs them) and at most ``max_requests``."""
    n = max(1, min(max_requests, max(min_requests, round(rate * seconds))))
    offsets, t = [], 0.0
    for _ in range(n):
        t += rng.expovariate(rate) if arrivals == "poisson" else 1.0 / rate
        offsets.append(t)
    rec = Recorder()
    tasks = []
    for i, offset in enumerate(offsets):
        due = rec.t0 + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body, tokens = bodies[i % len(bodies)]
        tasks.append(asyncio.create_task(post(http, body, due, tokens, rec)))
    await asyncio.gather(*tasks)
    return rec


async def batch_metric(http) -> tuple[float, float]:
    """(sum, count) of bentoml_service_adaptive_batch_size for the inference API, over all workers."""
    text = (await http.get("/metrics")).text
    total = {"sum": 0.0, "count": 0.0}
    for kind in total:
        for m in re.finditer(rf'^bentoml_service_adaptive_batch_size_{kind}\{{[^}}]*method_name="score_steps"[^}}]*\}} (\S+)$',
                             text, re.M):
            total[kind] += float(m.group(1))
    return total["sum"], total["count"]


async def with_batches(http, phase):
    s0, c0 = await batch_metric(http)
    rec = await phase
    s1, c1 = await batch_metric(http)
    return rec, {"model_calls": int(c1 - c0), "mean_batch": round((s1 - s0) / (c1 - c0), 2) if c1 > c0 else None,
                 "metric_count": [c0, c1]}


async def first_requests(http, bodies: list[bytes], n: int = 10) -> list[float]:
    """Seconds each of the first ``n`` requests took, one after another (the first right after ready);
    ``bodies``: as many of the same work (a body sent twice could be answered from a cache)."""
    out = []
    for body in bodies[:n]:
        t0 = time.perf_counter()
        resp = await http.post("/score", content=body, headers={"content-type": "application/json"})
        resp.raise_for_status()
        out.append(time.perf_counter() - t0)
    return out


async def side_by_side(urls: dict[str, str], bodies, concurrency: int, seconds: float, rounds: int,
                       warmup: int, min_requests: int, max_requests: int, timeout: float) -> dict[str, list[float]]:
    """Served tokens/s of several running services, in turns: each round runs one closed loop at
    ``concurrency`` against each service in order, so a shared machine's drift falls on all of them.
    Returns {name: [tokens/s per round]}."""
    import httpx

    per: dict[str, list[float]] = {name: [] for name in urls}
    limits = httpx.Limits(max_connections=4 * concurrency, max_keepalive_connections=2 * concurrency)
    clients = {name: httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) for name, url in urls.items()}
    try:
        for http in clients.values():  # the batcher fits its latency model on its first calls
            await closed_loop(http, bodies, concurrency, 600, warmup)
        for _ in range(rounds):
            for name, http in clients.items():
                rec = await closed_loop(http, bodies, concurrency, seconds, max_requests, min_requests)
                per[name].append(rec.summary()["tokens_per_s"])
    finally:
        for http in clients.values():
            await http.aclose()
    return per
