"""Tokens per second: the batched ``HFCompleter`` against one-at-a-time ``model.generate``, same model and settings.

Both sample SmolLM2-135M (bf16, the model object ``load_completer`` builds, so the same attention
code) at temperature 0.5 with top-k 50, at most 40 new tokens, stopping at a blank line or the
next "Question:" (``generate``'s ``stop_strings``) or end of text, continuing the same rollout
prefixes: the demo problems' step prefixes after the built-in worked examples. ``HFCompleter`` draws
``--samples`` rollouts from each of ``--prefixes`` prefixes in one call (one prefill per prefix,
the shared few-shot prefix attended once, finished rows leaving the batch); ``generate`` draws
``--baseline-rollouts`` of the same rollouts one by one (it is timed on fewer, being slow). Tokens
are the new tokens sampled, counted on each side; ``speedup`` is the ratio of tokens per second
over all rounds. The two alternate for ``--rounds`` rounds (other seeds each round), so a change in
the machine's load (other processes on its 2 cores) falls on both rather than on one. ``--threads``
sets torch's threads for both: on a machine that other processes keep busy, 1 avoids the OpenMP
waits that make one-sequence decoding (hundreds of tiny ops per token) many times slower than it is
on an idle machine, which would flatter the batched side.

    .venv/bin/python benchmarks/completer_throughput.py [--prefixes 8 --samples 8 --baseline-rollouts 8 --rounds 3 --threads 1]

The last line printed is JSON with ``speedup``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.completers import STOP, RolloutRequest  # noqa: E402
from data_tools.labelling import render_prefix  # noqa: E402
from data_tools.synth.problems import generate_dataset  # noqa: E402

TEMPERATURE, TOP_K, MAX_NEW_TOKENS = 0.5, 50, 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8, help="rollouts per prefix for HFCompleter")
    parser.add_argument("--baseline-rollouts", type=int, default=8, help="rollouts drawn one at a time with generate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from prm.generation import load_completer

    completer = load_completer("smollm2-135m", max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_k=TOP_K)
    model, tok = completer.model, completer.tokenizer
    data = generate_dataset(args.prefixes, seed=11)
    prefixes = [render_prefix(ex.prompt, ex.steps[: 1 + i % (len(ex.steps) - 1)])
                for i, ex in enumerate(data)][: args.prefixes]
    gen_kwargs = dict(do_sample=True, temperature=TEMPERATURE, top_k=TOP_K, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS,
                      stop_strings=list(STOP), tokenizer=tok, pad_token_id=tok.eos_token_id)

    def batched(seed: int) -> tuple[int, float]:
        requests = [RolloutRequest(p, tuple(seed + 100 * i + s for s in range(args.samples)))
                    for i, p in enumerate(prefixes)]
        before, start = completer.tokens_generated, time.perf_counter()
        completer.complete(requests)
        return completer.tokens_generated - before, time.perf_counter() - start

    def one_by_one(seed: int, rollouts: int | None = None) -> tuple[int, float]:
        tokens, start = 0, time.perf_counter()
        for i in range(args.baseline_rollouts if rollouts is None else rollouts):  # round-robin over the prefixes
            ids = tok(prefixes[i % len(prefixes)], add_special_tokens=False, return_tensors="pt")
            torch.manual_seed(seed + i)
            with torch.inference_mode():
                out = model.generate(**ids, **gen_kwargs)
            tokens += out.shape[1] - ids["input_ids"].shape[1]
        return tokens, time.perf_counter() - start

    completer.complete([RolloutRequest(prefixes[0], (0,))])  # warm-ups: first-call allocations, and
    one_by_one(0, rollouts=1)  # generate's table of stop-string tokens (built once per tokenizer)
    totals = {"batched": [0, 0.0], "generate": [0, 0.0]}
    for r in range(args.rounds):
        for name, run in (("batched", batched), ("generate", one_by_one)):
            tokens, seconds = run(1000 * (r + 1))
            totals[name][0] += tokens
            totals[name][1] += seconds
            print(f"round {r + 1}, {name}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tokens/s", flush=True)
    rate = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    print(json.dumps({"speedup": round(rate["batched"] / rate["generate"], 2),
                      "batched_tokens_per_s": round(rate["batched"], 1), "generate_tokens_per_s": round(rate["generate"], 1),
                      "batched_rollouts_per_round": len(prefixes) * args.samples,
                      "generate_rollouts_per_round": args.baseline_rollouts, "rounds": args.rounds,
                      "batched_tokens": totals["batched"][0], "generate_tokens": totals["generate"][0],
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
