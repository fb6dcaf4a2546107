"""GSM8K train: is the gold answer extracted for every row, and how many problems get a wrong variant?

Runs the library path of ``prm inject-errors`` on the GSM8K file, then checks its output on its own:
a problem counts as covered when one of its variants has a final answer that ``answers_match`` says
differs from the gold one, its labels are right before ``meta.first_error`` and wrong from it on,
and every calculator annotation after the first error adds up (at it too, but for a slip). ``--per-kind`` runs each kind of
``--kinds`` alone and reports, per kind, how many problems get a variant of that kind and why the
others get none; ``--examples N`` prints N variants of each kind beside the gold solution. The last
line printed is JSON with ``coverage`` (and ``per_kind``).

    .venv/bin/python benchmarks/inject_coverage.py [--data ../shared/data/gsm8k/train.jsonl] [--seed 0]
    .venv/bin/python benchmarks/inject_coverage.py --kinds all --per-kind --examples 2
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.answers import answers_match, extract_answer  # noqa: E402
from data_tools.flags import comma_list  # noqa: E402
from data_tools.formats.gsm8k import CALCULATION, gold_answer  # noqa: E402
from data_tools.synth.calculations import evaluate, quantize  # noqa: E402
from data_tools.synth.inject import InjectConfig, InjectReport, inject_errors  # noqa: E402
from data_tools.synth.problems import ERROR_KINDS  # noqa: E402


def adds_up(steps: list[str]) -> bool:
    for step in steps:
        for m in CALCULATION.finditer(step):
            expr, _, result = m.group(1).partition("=")
            try:
                if quantize(evaluate(expr.replace("x", "*"))) != Fraction(result.replace(",", "")):
                    return False
            except ValueError:
                return False
    return True


def run(data: str, config: InjectConfig) -> tuple[InjectReport, list[dict], set[str], Counter, Counter, Counter]:
    """The report, the variants written, and the independent check: the problems covered, those by
    kind, the variants that pass by kind, and the faults found."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "errors.jsonl"
        report = inject_errors(data, out, "gsm8k", config)
        rows = [json.loads(line) for line in open(out, encoding="utf-8")]
    covered: Counter = Counter()
    passed: Counter = Counter()
    faults: Counter = Counter()
    seen, ids = set(), set()
    for row in rows:
        meta, steps, k = row["meta"], row["completions"], row["meta"]["first_error"]
        final = extract_answer(steps[-1])
        if final is None or answers_match(final, meta["answer"]).correct:
            faults["final answer not changed"] += 1
        elif row["labels"] != [True] * k + [False] * (len(steps) - k):
            faults["labels"] += 1
        elif not adds_up(steps[k + 1:]) or (meta["error_kind"] != "slip" and not adds_up(steps[k:k + 1])):
            faults["a calculation that does not add up"] += 1
        else:
            passed[meta["error_kind"]] += 1
            ids.add(meta["problem_id"])
            if (meta["problem_id"], meta["error_kind"]) not in seen:
                seen.add((meta["problem_id"], meta["error_kind"]))
                covered[meta["error_kind"]] += 1
    return report, rows, ids, covered, passed, faults


def show(rows: list[dict], golds: dict[str, list[str]], n: int, seed: int) -> None:
    for row in random.Random(seed).sample(rows, min(n, len(rows))):
        meta = row["meta"]
        print(f"  [{meta['error_kind']}] {meta.get('error_detail', '')} (first wrong step {meta['first_error']})")
        print(f"    Q: {row['prompt']}")
        for line in golds[meta["problem_id"]]:
            print(f"    - {line}")
        for line in row["completions"]:
            print(f"    + {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/gsm8k/train.jsonl"), help="GSM8K JSONL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", type=int, default=1, help="variants per problem")
    parser.add_argument("--kinds", type=comma_list, default=ERROR_KINDS,
                        help="error kinds, as prm inject-errors --kinds takes them ('all', 'real'; default: its default)")
    parser.add_argument("--per-kind", action="store_true", help="run each kind alone and report coverage per kind")
    parser.add_argument("--examples", type=int, default=0, help="print this many variants of each kind")
    args = parser.parse_args()

    start = time.perf_counter()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    extracted = sum(1 for r in rows if answers_match(extract_answer(r["answer"]), gold_answer(r["answer"])).correct)
    print(f"gold answer extracted for {extracted} of {len(rows)} rows")
    golds = {f"{n:05d}": [line for line in r["answer"].split("\n") if line.strip()] for n, r in enumerate(rows)}

    config = InjectConfig(seed=args.seed, variants=args.variants, kinds=tuple(args.kinds))
    problems = config.problems("gsm8k")
    if problems:
        parser.error("; ".join(problems))
    runs = [(kind,) for kind in config.error_kinds()] if args.per_kind else [config.error_kinds()]
    per_kind, union, variants, by_kind, faults = {}, set(), 0, Counter(), Counter()
    for kinds in runs:
        t = time.perf_counter()
        report, written, ids, covered, passed, bad = run(args.data, InjectConfig(
            seed=args.seed, variants=args.variants, kinds=kinds))
        variants += len(written)
        by_kind.update(passed)
        faults.update(bad)
        union |= ids
        print(report.summary())
        if args.per_kind:
            (kind,) = kinds
            per_kind[kind] = {"problems": covered[kind], "coverage": round(covered[kind] / len(rows), 4),
                              "no_variant": dict(Counter({k.split(": ", 1)[-1]: v for k, v in
                                                          report.no_variant.most_common(4)}))}
            print(f"  {kind}: {covered[kind]} of {len(rows)} problems ({covered[kind] / len(rows):.1%}) "
                  f"in {time.perf_counter() - t:.1f} s")
        if args.examples:
            for kind in kinds:
                show([r for r in written if r["meta"]["error_kind"] == kind], golds, args.examples, args.seed)
    seconds = time.perf_counter() - start
    print(f"independently checked: {len(union)} of {len(rows)} problems have a variant with another final answer"
          + (f"; faults: {dict(faults)}" if faults else ""))
    if per_kind:
        print("| kind | problems with a variant | coverage | commonest reasons for none |")
        print("|---|---|---|---|")
        for kind, r in per_kind.items():
            reasons = ", ".join(f"{why} {n}" for why, n in r["no_variant"].items())
            print(f"| {kind} | {r['problems']} | {r['coverage']:.1%} | {reasons} |")
    print(json.dumps({"rows": len(rows), "gold_extracted": extracted / len(rows), "coverage": len(union) / len(rows),
                      "variants": variants, "by_kind": dict(sorted(by_kind.items())), "faults": sum(faults.values()),
                      "kinds": list(config.error_kinds()),
                      "per_kind": per_kind, "seed": args.seed, "seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main()
