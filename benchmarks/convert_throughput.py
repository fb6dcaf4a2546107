"""Steps per second through ``prm convert``: the library function it calls, and the command end to end.

Generates synthetic Math-Shepherd and ProcessBench files in a temporary folder (``--rows`` rows of 2-9
steps), times ``data_tools.formats.convert`` on Math-Shepherd -> TRL (the headline ``steps_per_s``),
ProcessBench -> TRL and TRL -> stepwise, then ``prm convert`` as a subprocess, interpreter start-up
included. The last line printed is JSON with ``steps_per_s``.

    .venv/bin/python benchmarks/convert_throughput.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.formats import convert  # noqa: E402


def synthetic(folder: Path, rows: int, seed: int = 0) -> tuple[Path, Path, int]:
    """A Math-Shepherd file and a ProcessBench file of the same solutions; returns them and the step count."""
    rng = random.Random(seed)
    ms, pb = folder / "math_shepherd.jsonl", folder / "processbench.jsonl"
    steps_total = 0
    with open(ms, "w", encoding="utf-8") as f_ms, open(pb, "w", encoding="utf-8") as f_pb:
        for i in range(rows):
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            n = rng.randint(2, 9)
            steps = [f"Step {k}: Tom has {a + k} apples and buys {b} more, so {a + k} + {b} = <<{a + k}+{b}="
                     f"{a + k + b}>>{a + k + b} apples." for k in range(1, n)] + [f"Step {n}: The answer is: {a + b}"]
            first = rng.randint(-1, n - 1)
            marks = ["+" if first < 0 or k < first else "-" for k in range(n)]
            question = f"Tom has {a} apples and buys {b} more, {i} times over. How many apples does he have?"
            text = question + " " + "\n".join(f"{s} ки" for s in steps)
            label = question + " " + "\n".join(f"{s} {m}" for s, m in zip(steps, marks, strict=True))
            f_ms.write(json.dumps({"input": text, "label": label, "task": "GSM8K"}, ensure_ascii=False) + "\n")
            f_pb.write(json.dumps({"id": f"synthetic-{i}", "generator": "synthetic", "problem": question,
                                   "steps": steps, "final_answer_correct": first < 0, "label": first}) + "\n")
            steps_total += n
    return ms, pb, steps_total


def timed(source: str, target: str, inp: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    report = convert(source, target, inp, out)
    return time.perf_counter() - start, report.steps_read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ms, pb, steps = synthetic(folder, args.rows)
        print(f"{args.rows} rows, {steps} steps, {ms.stat().st_size / 1e6:.1f} MB of Math-Shepherd JSONL")
        figures = {}
        for name, source, target, inp, out in [
            ("math_shepherd_to_trl", "math-shepherd", "trl", ms, folder / "ms_trl.jsonl"),
            ("processbench_to_trl", "processbench", "trl", pb, folder / "pb_trl.jsonl"),
            ("trl_to_stepwise", "trl", "stepwise", folder / "ms_trl.jsonl", folder / "stepwise.jsonl"),
        ]:
            seconds, n = timed(source, target, inp, out)
            figures[name] = round(n / seconds)
            print(f"{name}: {n} steps in {seconds:.2f} s = {n / seconds:,.0f} steps/s")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "serving.cli", "convert", "--from", "math-shepherd", "--to", "trl",
                        str(ms), str(folder / "cli.jsonl")], check=True, cwd=ROOT, capture_output=True)
        cli_seconds = time.perf_counter() - start
        print(f"prm convert end to end (start-up included): {steps / cli_seconds:,.0f} steps/s")
    print(json.dumps({"rows": args.rows, "steps": steps, "steps_per_s": figures["math_shepherd_to_trl"],
                      **{f"{k}_steps_per_s": v for k, v in figures.items()},
                      "cli_steps_per_s": round(steps / cli_seconds)}))


if __name__ == "__main__":
    main()
