"""Binary search vs per-step Monte-Carlo labelling: rollouts spent, and how often both find the same first wrong step.

Both labellers run in the same process on the same solutions with the same completer and seeds:
per-step Monte-Carlo (``mc_label``: N rollouts from every step's prefix, no early stopping) is the
reference, binary search (``binary_label``) the contender. ``agreement`` is the share of solutions
whose first wrong step (first false hard label, -1 for none) is the same under both;
``rollout_ratio`` is MC's rollouts over binary search's. Also reported: the share of solutions whose
MC hard labels are monotone (never wrong then right again: the assumption binary search makes, so
its agreement can only fall short where this does), each method's agreement with the injected
error (ground truth, never shown to the labellers), and MC with early stopping as a second baseline.

Binary search trusts a right final answer by default (OmegaPRM: such a solution is right at every
step, no rollout spent); MC still rolls out from its prefixes and, with a weak completer, finds some
of them "wrong" (no rollout of N succeeded). So ``untrusting_*`` also reports binary search with
``trust_final_answer=False``, which probes those solutions as MC does and so reproduces MC's hard
labels wherever they are monotone, at a higher rollout cost.

Data: the embedded problem generator (``data_tools.problems.generate_dataset``: a gold solution and
one with an injected error per problem). Its default is 2 operations (3 steps with the answer),
where no first-error search can save 4x: a wrong solution's error prefix costs N rollouts under
any method, against about 3.5N per problem for MC (2 prefixes of the gold solution, 1.5 of the
wrong one). So the headline figures use longer problems; the others are reported beside them.

- ``simulated``: 300 problems of 6 operations; ``SimulatedCompleter`` defaults (a prefix before the
  first error reaches the gold answer with p=0.8, one after it with p=0.02). ``simulated_by_ops``
  sweeps 2, 4, 6 and 8 operations.
- ``smollm2``: SmolLM2-135M (bf16, temperature 0.5, top-k 50), on problems of ``--smollm2-ops``
  operations (default 2, the demo's), few-shot examples of the same length; ``smollm2_long`` on
  ``--smollm2-long-ops`` operations (0 skips it).

    .venv/bin/python benchmarks/labelling_cost.py [--rollouts 8] [--smollm2-problems 40] [--threads 1] [--no-smollm2]

The last line printed is JSON: {"simulated": {"agreement", "rollout_ratio", ...}, "smollm2": {...}, ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.completers.simulated import SimulatedCompleter, SimulatedConfig  # noqa: E402
from data_tools.labelling import FEW_SHOT, first_error, mc_label, render_prefix  # noqa: E402
from data_tools.labelling.binary import binary_label  # noqa: E402
from data_tools.synth.problems import generate_dataset  # noqa: E402


def monotone(hard) -> bool:
    return all(a or not b for a, b in zip(hard, hard[1:], strict=False))


def compare(examples, completer, rollouts: int, few_shot: str | None = None, early_stop_baseline: bool = True) -> dict:
    start = time.perf_counter()
    mc, mc_report = mc_label(examples, completer, rollouts=rollouts, few_shot=few_shot)
    mc_seconds = time.perf_counter() - start
    start = time.perf_counter()
    bs, bs_report = binary_label(examples, completer, rollouts=rollouts, few_shot=few_shot)
    bs_seconds = time.perf_counter() - start
    strict, strict_report = binary_label(examples, completer, rollouts=rollouts, few_shot=few_shot,
                                         trust_final_answer=False)
    n = len(mc)
    mc_first = [first_error(e.meta["hard_labels"]) for e in mc]
    bs_first = [first_error(e.meta["hard_labels"]) for e in bs]
    strict_first = [first_error(e.meta["hard_labels"]) for e in strict]
    truth = [e.meta["first_error"] for e in examples]
    out = {
        "agreement": round(sum(a == b for a, b in zip(mc_first, bs_first, strict=True)) / n, 4),
        "rollout_ratio": round(mc_report.rollouts / max(bs_report.rollouts, 1), 2),
        "solutions": n, "mc_rollouts": mc_report.rollouts, "binary_rollouts": bs_report.rollouts,
        "mc_monotone": round(sum(monotone(e.meta["hard_labels"]) for e in mc) / n, 4),
        "mc_truth_agreement": round(sum(a == t for a, t in zip(mc_first, truth, strict=True)) / n, 4),
        "binary_truth_agreement": round(sum(b == t for b, t in zip(bs_first, truth, strict=True)) / n, 4),
        "untrusting_agreement": round(sum(a == b for a, b in zip(mc_first, strict_first, strict=True)) / n, 4),
        "untrusting_rollout_ratio": round(mc_report.rollouts / max(strict_report.rollouts, 1), 2),
        "untrusting_truth_agreement": round(sum(b == t for b, t in zip(strict_first, truth, strict=True)) / n, 4),
        "mc_success_rate": round(mc_report.successes / max(mc_report.rollouts, 1), 4),
        "mc_seconds": round(mc_seconds, 1), "binary_seconds": round(bs_seconds, 1),
    }
    if early_stop_baseline:
        _, es_report = mc_label(examples, completer, rollouts=rollouts, few_shot=few_shot, early_stop=True)
        out["rollout_ratio_vs_mc_early_stop"] = round(es_report.rollouts / max(bs_report.rollouts, 1), 2)
    return out


def problems(n: int, ops: int, seed: int = 0):
    return generate_dataset(n, seed=seed, min_steps=ops, max_steps=ops)


def few_shot_for(ops: int) -> str:
    """Worked examples as long as the problems (the built-in ones have 2 operations), from other problems."""
    if ops == 2:
        return FEW_SHOT
    gold = [ex for ex in problems(20, ops, seed=1_000_003) if ex.meta["first_error"] < 0][:3]
    return "".join(render_prefix(ex.prompt, ex.steps, few_shot="") + "\n" for ex in gold)


def smollm2(completer, n: int, ops: int, rollouts: int) -> dict:
    completer.max_new_tokens = 16 * ops + 8  # a step line is ~12-15 tokens; the answer line ends a rollout early
    start, tokens = time.perf_counter(), completer.tokens_generated
    out = compare(problems(n, ops), completer, rollouts, few_shot_for(ops), early_stop_baseline=False)
    out.update(ops=ops, tokens=completer.tokens_generated - tokens, seconds=round(time.perf_counter() - start, 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--simulated-problems", type=int, default=300)
    parser.add_argument("--smollm2-problems", type=int, default=40)
    parser.add_argument("--smollm2-ops", type=int, default=2)
    parser.add_argument("--smollm2-long-problems", type=int, default=20)
    parser.add_argument("--smollm2-long-ops", type=int, default=3, help="0 skips the long-problem SmolLM2 run")
    parser.add_argument("--no-smollm2", action="store_true", help="simulated completer only")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default; 1 is faster on a machine other processes keep busy)")
    args = parser.parse_args()

    sim = SimulatedCompleter(SimulatedConfig())
    result = {"rollouts": args.rollouts,
              "simulated": {"ops": 6, **compare(problems(args.simulated_problems, 6), sim, args.rollouts)},
              "simulated_by_ops": {ops: compare(problems(args.simulated_problems, ops), sim, args.rollouts)
                                   for ops in (2, 4, 6, 8)}}
    for ops, r in result["simulated_by_ops"].items():
        print(f"simulated, {ops} ops: agreement {r['agreement']:.3f}, rollout ratio {r['rollout_ratio']:.2f} "
              f"(vs MC with early stopping {r['rollout_ratio_vs_mc_early_stop']:.2f}), MC monotone {r['mc_monotone']:.3f}",
              flush=True)
    if not args.no_smollm2:
        import torch

        from prm.generation import load_completer

        if args.threads:
            torch.set_num_threads(args.threads)
        completer = load_completer("smollm2-135m", temperature=0.5)
        runs = [("smollm2", args.smollm2_problems, args.smollm2_ops)]
        if args.smollm2_long_ops:
            runs.append(("smollm2_long", args.smollm2_long_problems, args.smollm2_long_ops))
        for name, n, ops in runs:
            result[name] = r = smollm2(completer, n, ops, args.rollouts)
            print(f"{name}, {ops} ops, {r['solutions']} solutions: agreement {r['agreement']:.3f}, rollout ratio "
                  f"{r['rollout_ratio']:.2f} (not trusting right answers: {r['untrusting_agreement']:.3f}, "
                  f"{r['untrusting_rollout_ratio']:.2f}), truth agreement MC {r['mc_truth_agreement']:.3f} binary "
                  f"{r['binary_truth_agreement']:.3f}, MC monotone {r['mc_monotone']:.3f}, MC success rate "
                  f"{r['mc_success_rate']:.3f}, {r['tokens']} tokens in {r['seconds']} s", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
