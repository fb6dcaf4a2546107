"""Scored tokens per second of every Scorer backend, next to this machine's bf16 matmul roofline.

Times ``Scorer.step_logits`` (tokenize, sort by length, pad, forward, read step logits) for each
backend on mixed-length demo-style solutions (2-8 steps, numbers up to 99), counting real (unpadded)
tokens. Every backend other than PyTorch fp32 must pass the quality gate against it on labelled
held-out steps (``--check``, repeatable): step AUROC drop <= 0.005 and >= 99% of calibrated step
decisions unchanged; int8 is (re)made by ``prm.export.quantize_int8`` with the same gate. Every
backend is timed and printed, a refused one too (marked FAIL; a refused int8 file is removed
afterwards), so the table shows what the gate costs. Gate on a few hundred steps at least: at 99%,
180 steps allow one changed decision. In the same run it
measures the bf16 GEMM throughput at the model's own matmul shapes and turns it into a tokens/s
roofline (2 x non-embedding parameters FLOPs per token, attention scores included).

    .venv/bin/prm generate heldout.jsonl --problems 300 --seed 1000010   # labelled by construction
    .venv/bin/python benchmarks/scoring_throughput.py --model demo_out/model \\
        --check demo_out/data/labelled.jsonl --check heldout.jsonl [--threads 1] [--solutions 48]

The last line is JSON with best_backend (the fastest that passed the gate), speedup_vs_torch_fp32,
gate_passed, roofline_fraction, and fastest_backend with its speedup and gate result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.schema import read_jsonl  # noqa: E402
from data_tools.synth.problems import generate_dataset  # noqa: E402
from prm.scoring import BACKENDS, Scorer  # noqa: E402


def workload(n: int, seed: int) -> list[tuple[str, list[str]]]:
    data = generate_dataset(max(1, n // 2), seed=seed, min_steps=2, max_steps=8, max_number=99)
    return [(e.prompt, e.steps) for e in data][:n]


def throughput(scorers: dict[str, Scorer], items, repeats: int) -> tuple[dict[str, float], int]:
    """({backend: real tokens per second over its best pass}, real tokens per pass). The backends take
    turns, one pass each per round, so a change of load on this shared machine falls on all of them."""
    first = next(iter(scorers.values()))
    encoded, _ = first.batches(items)
    tokens = sum(len(e.input_ids) for e in encoded)
    for scorer in scorers.values():
        scorer.step_logits(items[: scorer.batch_size])  # warm-up: kernels, ORT arenas, torch.compile
    best = dict.fromkeys(scorers, float("inf"))
    for _ in range(repeats):
        for backend, scorer in scorers.items():
            t0 = time.perf_counter()
            scorer.step_logits(items)
            best[backend] = min(best[backend], time.perf_counter() - t0)
    return {backend: tokens / seconds for backend, seconds in best.items()}, tokens


def bf16_roofline(folder: Path, mean_len: float, threads: int, device: str = "cpu") -> dict:
    """bf16 GEMM FLOP/s at the backbone's matmul shapes (M = 8 x mean length) on ``device``, as tokens/s."""
    import torch

    cfg = json.loads((folder / "config.json").read_text())
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = h // cfg["num_attention_heads"] * cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    torch.set_num_threads(threads)
    m = int(8 * mean_len)
    shapes = [(h, h), (h, 2 * kv), (h, h), (h, 2 * inter), (inter, h)]  # q, kv, o, gate+up, down
    flops, seconds = 0.0, 0.0
    for k, n in shapes:
        a = torch.randn(m, k, dtype=torch.bfloat16, device=device)
        b = torch.randn(k, n, dtype=torch.bfloat16, device=device)
        for _ in range(3):
            a @ b
        reps = 10 if device == "cpu" else 200
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        seconds += (time.perf_counter() - t0) / reps
        flops += 2.0 * m * k * n
    gflops = flops / seconds / 1e9
    per_token = 2.0 * layers * sum(k * n for k, n in shapes) + 4.0 * layers * mean_len * h  # + QK^T and PV
    return {"bf16_gemm_gflops": gflops, "flops_per_token": per_token, "roofline_tok_s": gflops * 1e9 / per_token}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="artifact folder (with onnx/model.onnx)")
    ap.add_argument("--check", required=True, action="append",
                    help="labelled held-out stepwise JSONL for the quality gate; repeat it to pool files (rows of "
                    "`prm generate` are labelled by their injected error)")
    ap.add_argument("--check-limit", type=int, default=0, help="gate on the first N solutions only (0: all)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--solutions", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each backend keeps its best pass")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--fp16", action="store_true", help="also make, gate and time onnx/model.fp16.onnx (on by "
                    "default when a GPU is present; on a CPU it runs no faster than fp32)")
    ap.add_argument("--calib-solutions", type=int, default=300,
                    help="generated solutions (seed + 1) that GPTQ rounds the bf16 weights on")
    args = ap.parse_args()

    import torch

    from prm.export import GateError, compare_backends, convert_fp16, gate_labels, quantize_int8
    from prm.export.gptq import write_bf16_weights
    from prm.scoring import ONNX_FP16_FILE, ONNX_INT8_FILE
    from prm.scoring.cuda import gpu_count

    torch.set_num_threads(args.threads)
    folder = Path(args.model)
    examples = [e for path in args.check for e in read_jsonl(path)][: args.check_limit or None]
    check_items, check_labels = [(e.prompt, e.steps) for e in examples], [gate_labels(e) for e in examples]
    gates, cache = {"torch": {"passed": True}}, {}
    try:
        gates["onnx-int8"] = quantize_int8(folder, check_items, check_labels, keep_refused=True)
    except GateError as exc:  # still timed below, then removed: the table shows what the gate refused
        gates["onnx-int8"] = exc.figures
    fp16 = args.fp16 or gpu_count() > 0
    if fp16:
        try:
            gates["onnx-fp16"] = convert_fp16(folder, check_items, check_labels, keep_refused=True)
        except GateError as exc:
            gates["onnx-fp16"] = exc.figures
    calib = workload(args.calib_solutions, args.seed + 1)  # fresh problems: neither timed nor gated on
    write_bf16_weights(folder, calib)
    for backend in ("torch-bf16", "torch-bf16-gptq", "onnx"):
        gates[backend] = compare_backends(folder, check_items, check_labels, "torch", backend, threads=args.threads,
                                          cache=cache)

    items = workload(args.solutions, args.seed)
    scorers = {b: Scorer(folder, backend=b, batch_size=args.batch_size, threads=args.threads) for b in BACKENDS
               if b != "onnx-fp16" or fp16}
    devices = {b: s.device for b, s in scorers.items()}
    rows, tokens = throughput(scorers, items, args.repeats)
    del scorers
    for backend, path in (("onnx-int8", ONNX_INT8_FILE), ("onnx-fp16", ONNX_FP16_FILE)):
        if backend in gates and not gates[backend]["passed"]:
            (folder / path).unlink(missing_ok=True)
    roof = bf16_roofline(folder, tokens / len(items), args.threads, devices["torch"])
    base = rows["torch"]
    steps = gates["onnx"]["steps"]
    print(f"{len(items)} solutions, {tokens} real tokens (mean {tokens / len(items):.0f}), batch {args.batch_size}, "
          f"{args.threads} thread(s); bf16 GEMM {roof['bf16_gemm_gflops']:.0f} GFLOP/s -> roofline "
          f"{roof['roofline_tok_s']:.0f} tok/s; gate on {len(examples)} held-out solutions, {steps} steps")
    print(f"{'backend':<14}{'tok/s':>10}{'x torch fp32':>14}{'x roofline':>12}  gate vs torch fp32")
    for backend, tok_s in rows.items():
        g = gates[backend]
        gate = "reference" if backend == "torch" else (
            f"{'pass' if g['passed'] else 'FAIL'} (AUROC drop {g['auroc_drop']:+.4f}, decisions unchanged "
            f"{g['decisions_unchanged']:.4f}: {g['decisions_changed']} of {g['steps']} changed)"
            + ("" if backend != "onnx-int8" or g["passed"] else ", refused: not kept"))
        print(f"{backend:<14}{tok_s:>10.0f}{tok_s / base:>14.2f}{tok_s / roof['roofline_tok_s']:>12.2f}  {gate}")
    print(f"calibrated scores, PyTorch fp32 vs ONNX Runtime fp32, {steps} held-out steps: "
          f"max |diff| {gates['onnx']['max_abs_score_diff']:.2e}")
    passing = {b: v for b, v in rows.items() if gates[b]["passed"]}
    best, fastest = max(passing, key=passing.get), max(rows, key=rows.get)
    print(json.dumps({"best_backend": best, "tok_s": {b: round(v, 1) for b, v in rows.items()},
                      "speedup_vs_torch_fp32": round(passing[best] / base, 3), "gate_passed": True,
                      "fastest_backend": fastest, "fastest_speedup": round(rows[fastest] / base, 3),
                      "fastest_gate_passed": bool(gates[fastest]["passed"]),
                      "gate": {b: {k: g[k] for k in ("passed", "auroc_drop", "decisions_unchanged", "decisions_changed")}
                               for b, g in gates.items() if b != "torch"},
                      "gate_steps": steps,
                      "calibrated_max_abs_diff_torch_onnx": gates["onnx"]["max_abs_score_diff"],
                      "roofline_tok_s": round(roof["roofline_tok_s"], 1),
                      "roofline_fraction": round(passing[best] / roof["roofline_tok_s"], 3),
                      "threads": args.threads, "tokens": tokens, "devices": devices}))


if __name__ == "__main__":
    main()
