"""Incremental scoring against full re-scoring, side by side, over a 5-step beam search.

A step-level beam search (``serving.search.run_search("beam", ...)``, width x expand candidates per
depth, ``--depth`` steps) scores at every depth children that extend prefixes it scored one depth
before. Every scoring call of the search goes to two ``Scorer``s over the same artifact and backend:
one with a prefix cache (``prefix_cache_mb``: only the tokens no cached prefix covers are computed),
one without (every candidate scored whole; ``--full-backend`` may give it another backend, e.g. ONNX). They take turns going first, call by call, so a change of
load on this shared machine falls on both; the search itself follows the cached scores. The proposer is
scripted and seeded: at each depth, the gold solution's next step of a generated 4-operation problem
(5 steps with its answer) and slips of it (its result off by a few), so both scorers see exactly the
same inputs and no generator time is mixed in.

    .venv/bin/python benchmarks/incremental_scoring.py --model demo_out/model [--backend torch] [--problems 4] [--threads 1]

Counts real (unpadded) tokens the model computed (``Scorer.cache_stats``) and the wall time of the
scoring calls. The last line is JSON: ``tokens_ratio`` (full / cached), ``time_ratio`` (full / cached),
``max_abs_diff`` (largest difference of any calibrated step score), the cache's hits and size.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.synth.problems import generate_dataset  # noqa: E402
from prm.scoring import Scorer  # noqa: E402
from serving.search import run_search  # noqa: E402


def problems(n: int, seed: int, operations: int) -> list[tuple[str, list[str]]]:
    """(prompt, gold steps) of ``n`` generated problems with ``operations`` operations each."""
    data = generate_dataset(n, seed=seed, min_steps=operations, max_steps=operations)
    return [(e.prompt, e.steps) for e in data if e.meta.get("first_error", -1) < 0][:n]


def slip(step: str, rng: random.Random) -> str:
    """``step`` with one of its numbers off by 1 to 9 (a misread operand, a wrong result or final answer)."""
    numbers = list(re.finditer(r"\d+", step))
    if not numbers:
        return step + " (again)"
    m = rng.choice(numbers)
    wrong = int(m.group()) + rng.choice([k for k in range(-9, 10) if k])
    return step[:m.start()] + str(abs(wrong)) + step[m.end():]


def scripted(gold: dict[str, list[str]]):
    """``propose``: the gold next step and slips of it, seeded by the prefix (the same prefix, the same steps)."""
    def propose(prompt: str, steps: list[str], n: int) -> list[str]:
        solution = gold[prompt]
        if len(steps) >= len(solution):
            return []
        rng = random.Random(zlib.crc32(json.dumps([prompt, steps]).encode()))
        out, want = [solution[len(steps)]], solution[len(steps)]
        for _ in range(50 * n):
            if len(out) >= n:
                break
            s = slip(want, rng)
            if s not in out:
                out.append(s)
        rng.shuffle(out)
        return out

    return propose


class SideBySide:
    """A search ``score`` function that runs every call on both scorers, timing each; returns the cached scores."""

    def __init__(self, full: Scorer, cached: Scorer):
        self.full, self.cached = full, cached
        self.seconds = {"full": 0.0, "cached": 0.0}
        self.max_abs_diff, self.calls, self.candidates = 0.0, 0, 0

    def __call__(self, prompt: str, candidates: list[list[str]]) -> list[list[float]]:
        items = [(prompt, list(c)) for c in candidates]
        order = [("full", self.full), ("cached", self.cached)]
        if self.calls % 2:
            order.reverse()
        got = {}
        for name, scorer in order:
            t0 = time.perf_counter()
            got[name] = scorer.score(items)
            self.seconds[name] += time.perf_counter() - t0
        for a, b in zip(got["full"], got["cached"], strict=True):
            self.max_abs_diff = max(self.max_abs_diff, max(abs(x - y) for x, y in zip(a, b, strict=True)))
        self.calls += 1
        self.candidates += len(candidates)
        return got["cached"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "demo_out" / "model"), help="artifact folder")
    ap.add_argument("--backend", default="torch", help="a torch backend: torch, torch-bf16, torch-bf16-gptq")
    ap.add_argument("--full-backend", default="", help="backend of the full re-scoring (default: --backend); e.g. onnx "
                    "to weigh incremental torch against the fastest full path")
    ap.add_argument("--problems", type=int, default=4, help="beam searches, one per generated problem")
    ap.add_argument("--depth", type=int, default=5, help="steps per solution (operations + the answer step)")
    ap.add_argument("--beam-width", type=int, default=4)
    ap.add_argument("--expand", type=int, default=4, help="children per live beam per depth")
    ap.add_argument("--batch-size", type=int, default=16, help="rows per forward pass (both scorers)")
    # One thread: on this 2-core machine, shared with other jobs, two torch threads spin at every op's barrier
    # whenever one is descheduled; measured there, a 16-row incremental pass took 8.7 s on 2 threads, 1.1 s on 1.
    ap.add_argument("--threads", type=int, default=1, help="model threads (0: all cores)")
    ap.add_argument("--cache-mb", type=float, default=256, help="prefix cache of the cached scorer, MiB")
    ap.add_argument("--seed", type=int, default=7)
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)

    kw = {"batch_size": args.batch_size, "threads": args.threads or None}
    full = Scorer(args.model, backend=args.full_backend or args.backend, **kw)
    cached = Scorer(args.model, backend=args.backend, prefix_cache_mb=args.cache_mb, **kw)
    if cached.prefix_cache is None:
        raise SystemExit(f"backend {args.backend!r} cannot score incrementally here (see the log); use a torch backend")
    work = problems(args.problems + 1, args.seed, args.depth - 1)
    gold = dict(work)
    propose = scripted(gold)
    width, expand = args.beam_width, args.expand

    def search(prompt: str, score) -> object:
        return run_search("beam", prompt, propose, score, budget=width * expand, beam_width=width, expand=expand,
                          max_steps=args.depth, is_final=lambda step: False)

    # warm-up on a problem of its own (allocator, kernels), then counters from zero
    search(work[0][0], SideBySide(full, cached))
    cached.prefix_cache.clear()
    before = {"full": full.cache_stats, "cached": cached.cache_stats}
    side = SideBySide(full, cached)
    chosen = []
    for prompt, _ in work[1:]:
        result = search(prompt, side)
        chosen.append(result.steps == gold[prompt])
    after = {"full": full.cache_stats, "cached": cached.cache_stats}
    tokens = {k: after[k]["tokens_computed"] - before[k]["tokens_computed"] for k in after}
    delta = {k: after["cached"][k] - before["cached"][k] for k in ("lookups", "hits", "tokens_reused", "evictions")}
    out = {
        "model": str(args.model), "backend": args.backend, "full_backend": full.backend, "device": cached.device,
        "problems": len(work) - 1, "depth": args.depth, "beam_width": width, "expand": expand, "batch_size": args.batch_size,
        "scoring_calls": side.calls, "candidates_scored": side.candidates,
        "tokens_full": tokens["full"], "tokens_cached": tokens["cached"],
        "tokens_ratio": round(tokens["full"] / max(1, tokens["cached"]), 3),
        "seconds_full": round(side.seconds["full"], 3), "seconds_cached": round(side.seconds["cached"], 3),
        "time_ratio": round(side.seconds["full"] / max(1e-9, side.seconds["cached"]), 3),
        "max_abs_diff": side.max_abs_diff,
        "cache_lookups": delta["lookups"], "cache_hits": delta["hits"], "tokens_reused": delta["tokens_reused"],
        "cache_evictions": delta["evictions"], "cache_bytes": after["cached"]["bytes"],
        "cache_max_bytes": after["cached"]["max_bytes"], "gold_solution_chosen": sum(chosen),
    }
    print(f"{out['candidates_scored']} candidates in {out['scoring_calls']} scoring calls ({out['problems']} beam "
          f"searches, {width} x {expand}, {args.depth} steps, {args.backend} on {cached.device})")
    print(f"full re-scoring:  {tokens['full']:7d} tokens  {side.seconds['full']:7.2f} s  ({full.backend})")
    print(f"incremental:      {tokens['cached']:7d} tokens  {side.seconds['cached']:7.2f} s  ({args.backend}, "
          f"{delta['hits']}/{delta['lookups']} prefix hits, {out['cache_bytes'] / 2**20:.1f} MiB cached)")
    print(f"tokens {out['tokens_ratio']}x fewer, time {out['time_ratio']}x lower, max |diff| {side.max_abs_diff:.2e}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
