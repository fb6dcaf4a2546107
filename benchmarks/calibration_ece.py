"""Calibration on held-out data: ECE and Brier of every method on fresh problems, and a reliability PNG.

Labels are the injected-error ground truth, not Monte-Carlo labels: ``data_tools.problems`` makes,
per problem, a gold solution and one with an error injected at ``meta.first_error``; a step is
correct iff it comes before the first error. Two fresh problem sets (seeds other than the demo's)
are drawn: one to fit each calibrator on, one to measure on, so no step is both fitted and judged.
The model is scored once (PyTorch fp32 step logits); every calibrator is applied with
``apply_calibration``, as every backend does.

    .venv/bin/python benchmarks/calibration_ece.py --model demo_out/model --plot reliability.png [--threads 1]

The last line is JSON with ECE/Brier before and after for each method and the acceptance target.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.synth.problems import generate_dataset  # noqa: E402
from prm.calibrate import (  # noqa: E402
    METHODS,
    apply_calibration,
    brier,
    ece,
    fit_calibration,
    labelled_steps,
    reliability_diagram,
)
from prm.scoring import Scorer  # noqa: E402


def ground_truth_steps(scorer: Scorer, n_problems: int, seed: int):
    data = generate_dataset(n_problems, seed=seed)
    labels = [[float(e.meta["first_error"] < 0 or k < e.meta["first_error"]) for k in range(len(e.steps))]
              for e in data]
    return labelled_steps(scorer.step_logits([(e.prompt, e.steps) for e in data]), labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="artifact folder")
    ap.add_argument("--problems", type=int, default=200, help="fresh problems per set (2 solutions each)")
    ap.add_argument("--fit-seed", type=int, default=1001)
    ap.add_argument("--test-seed", type=int, default=2002)
    ap.add_argument("--plot", help="reliability diagram PNG (uncalibrated vs every method, on the test set)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    scorer = Scorer(args.model, backend="torch", calibrated=False, threads=args.threads)
    z, y, pos = ground_truth_steps(scorer, args.problems, args.fit_seed)
    tz, ty, tpos = ground_truth_steps(scorer, args.problems, args.test_seed)
    raw = apply_calibration(tz, None)
    before = {"ece": ece(raw, ty), "brier": brier(raw, ty)}
    target = min(0.03, before["ece"] / 2)
    results, curves = {}, {"uncalibrated": (raw, ty)}
    for method in METHODS:
        for per_position in (False, True):
            name = method + ("/per-position" if per_position else "")
            state = fit_calibration(z, y, pos, method, per_position)
            p = apply_calibration(tz, state, tpos)
            results[name] = {"ece": round(ece(p, ty), 4), "brier": round(brier(p, ty), 4)}
            if not per_position:
                curves[method] = (p, ty)
    print(f"fit on {len(y)} steps (seed {args.fit_seed}), measured on {len(ty)} steps (seed {args.test_seed}); "
          f"uncalibrated ECE {before['ece']:.4f}, Brier {before['brier']:.4f}; target ECE <= {target:.4f}")
    for name, r in results.items():
        print(f"  {name:<26} ECE {r['ece']:.4f}  Brier {r['brier']:.4f}  {'meets' if r['ece'] <= target else 'misses'}")
    if args.plot:
        reliability_diagram(curves, args.plot, title=f"Held-out reliability ({len(ty)} steps, equal-mass bins)")
    best = min(results, key=lambda k: results[k]["ece"])
    print(json.dumps({"fit_steps": int(len(y)), "test_steps": int(len(ty)), "ece_before": round(before["ece"], 4),
                      "brier_before": round(before["brier"], 4), "target_ece": round(target, 4), "methods": results,
                      "best_method": best, "ece_after": results[best]["ece"], "meets_target": results[best]["ece"] <= target}))


if __name__ == "__main__":
    main()
