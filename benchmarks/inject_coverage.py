"""GSM8K train: is the gold answer extracted for every row, and how many problems get a wrong variant?

Runs the library path of ``prm inject-errors`` on the GSM8K file, then checks its output on its own:
a problem counts as covered when one of its variants has a final answer that ``answers_match`` says
differs from the gold one. The last line printed is JSON with ``coverage``.

    .venv/bin/python benchmarks/inject_coverage.py [--data ../shared/data/gsm8k/train.jsonl] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.answers import answers_match, extract_answer  # noqa: E402
from data_tools.formats.gsm8k import gold_answer  # noqa: E402
from data_tools.synth.inject import InjectConfig, inject_errors  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"), help="GSM8K JSONL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", type=int, default=1, help="variants per problem")
    args = parser.parse_args()

    start = time.perf_counter()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    extracted = sum(1 for r in rows if answers_match(extract_answer(r["answer"]), gold_answer(r["answer"])).correct)
    print(f"gold answer extracted for {extracted} of {len(rows)} rows")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "errors.jsonl"
        report = inject_errors(args.data, out, "gsm8k", InjectConfig(seed=args.seed, variants=args.variants))
        covered, kinds, variants = set(), Counter(), 0
        for line in open(out, encoding="utf-8"):
            row = json.loads(line)
            meta, final = row["meta"], extract_answer(row["completions"][-1])
            variants += 1
            if final is not None and not answers_match(final, meta["answer"]).correct:
                covered.add(meta["problem_id"])
                kinds[meta["error_kind"]] += 1
    seconds = time.perf_counter() - start
    print(report.summary())
    print(f"independently checked: {len(covered)} of {len(rows)} problems have a variant with another final answer")
    print(json.dumps({"rows": len(rows), "gold_extracted": extracted / len(rows), "coverage": len(covered) / len(rows),
                      "variants": variants, "by_kind": dict(sorted(kinds.items())), "seed": args.seed,
                      "seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main()
