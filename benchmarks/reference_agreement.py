"""Reference labels (``prm label --method reference``) against human first errors on MR-GSM8K.

    .venv/bin/python benchmarks/reference_agreement.py [--data PATH] [--show N] [--limit N]

Reads ``../shared/data/mr-gsm8k/labelled_errors.jsonl`` itself: the step-level rows (``original`` and
``reversed``; ``POT`` rows are programs and are left out), their ``Step k:`` prefixes stripped, the
reference solution (``ground_truth_solution``) and its answer (the ``#### N`` value, else the number
its last line states, since ``ground_truth_answer`` of the reversed rows often holds their first line).
Each solution is labelled by ``data_tools.labelling.reference`` exactly as the job labels it, and its
first wrong step (hard labels) is compared with the annotators' (1-based in the file, 0-based here):

- ``exact``: the same step; ``within_one``: at most one step apart (exact included);
- ``too_early`` / ``too_late``: flagged before / after the human first error;
- ``never``: no step flagged (the labeller took the solution for right).

The shares (exact + too_early + too_late + never = 1) come overall, per ``question_type``, and for
the rows whose final answer happens to be right. ``--show N`` prints N disagreements with the reasons.
This set is for measuring only: no rule or constant of the labeller is fitted to it.
Human-readable lines, then the last line as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.answers import extract_answer  # noqa: E402
from data_tools.labelling.reference import reference_label  # noqa: E402
from data_tools.schema import StepwiseExample  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mr-gsm8k" / "labelled_errors.jsonl"
PREFIX = re.compile(r"^\s*step\s*\d+\s*:\s*", re.IGNORECASE)
FINAL = re.compile(r"^####[ \t]*(.*?)\s*$", re.MULTILINE)
KINDS = ("exact", "too_early", "too_late", "never")


def reference_answer(row: dict) -> str | None:
    finals = [m.group(1) for m in FINAL.finditer(row["ground_truth_solution"]) if m.group(1)]
    if finals:
        return finals[-1]
    lines = [line for line in row["ground_truth_solution"].splitlines() if line.strip()]
    return extract_answer(lines[-1]) if lines else None


def read(path: Path, limit: int | None) -> tuple[list[StepwiseExample], int, list[str]]:
    examples, pot, no_reference = [], 0, []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["question_type"] == "POT":
            pot += 1
            continue
        if not row["ground_truth_solution"].strip():
            no_reference.append(row["uuid"])
            continue
        steps = [PREFIX.sub("", s, count=1) for s in row["model_output_steps"]]
        meta = {"id": row["uuid"], "answer": reference_answer(row) or str(row["ground_truth_answer"]),
                "reference_solution": row["ground_truth_solution"], "question_type": row["question_type"],
                "human_first_error": row["model_output_solution_first_error_step"] - 1,
                "final_answer_correct": row["model_output_answer_correctness"] == "correct",
                "human_reason": row.get("model_output_solution_first_error_reason")}
        examples.append(StepwiseExample(row["question"], steps, None, meta))
        if limit and len(examples) >= limit:
            break
    return examples, pot, no_reference


def outcome(predicted: int, human: int) -> str:
    if predicted < 0:
        return "never"
    return "exact" if predicted == human else ("too_early" if predicted < human else "too_late")


def shares(rows: list[tuple[int, int]]) -> dict:
    n = len(rows)
    counts = {k: sum(outcome(p, h) == k for p, h in rows) for k in KINDS}
    out = {"n": n, **{k: round(c / n, 4) if n else None for k, c in counts.items()}}
    out["within_one"] = round(sum(p >= 0 and abs(p - h) <= 1 for p, h in rows) / n, 4) if n else None
    return out


def show(ex: StepwiseExample, predicted: int) -> None:
    human = ex.meta["human_first_error"]
    print(f"\n--- {ex.meta['id']} ({ex.meta['question_type']}): human step {human + 1}, ours "
          f"{predicted + 1 if predicted >= 0 else 'none'}\n{ex.prompt}\nreference: "
          f"{ex.meta['reference_solution']!r}\nhuman reason: {ex.meta['human_reason']}")
    for i, (step, why) in enumerate(zip(ex.steps, ex.meta["step_reasons"], strict=True)):
        mark = ("H" if i == human else " ") + ("R" if i == predicted else " ")
        print(f"{mark} {i + 1}. {step}\n        -> {why}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--show", type=int, default=0, help="print this many disagreements (spread over the file)")
    ap.add_argument("--limit", type=int, help="only the first N step-level rows")
    args = ap.parse_args(argv)
    examples, pot, no_reference = read(args.data, args.limit)
    start = time.monotonic()
    labelled, report = reference_label(examples)
    seconds = time.monotonic() - start
    rows = [(ex.first_error(), ex.meta["human_first_error"]) for ex in labelled]
    by_type: dict[str, list] = defaultdict(list)
    for ex, row in zip(labelled, rows, strict=True):
        by_type[ex.meta["question_type"]].append(row)
    right_answer = [row for ex, row in zip(labelled, rows, strict=True) if ex.meta["final_answer_correct"]]
    result = {"data": str(args.data), "solutions": len(labelled), "pot_rows_left_out": pot,
              "no_reference_left_out": no_reference, **shares(rows),
              "by_type": {t: shares(r) for t, r in sorted(by_type.items())},
              "right_final_answer": shares(right_answer), "odd_cases": dict(report.odd.most_common()),
              "seconds": round(seconds, 2)}
    missed = [(ex, p) for ex, (p, h) in zip(labelled, rows, strict=True) if p != h]
    for ex, p in missed[:: max(1, len(missed) // args.show)][: args.show] if args.show else []:
        show(ex, p)
    print(f"\n{len(labelled)} solutions ({pot} POT rows and {len(no_reference)} without a reference left out) in {seconds:.1f} s: exact {result['exact']:.1%}, "
          f"within one step {result['within_one']:.1%}, too early {result['too_early']:.1%}, too late "
          f"{result['too_late']:.1%}, never {result['never']:.1%}")
    for t, s in result["by_type"].items():
        print(f"  {t} ({s['n']}): exact {s['exact']:.1%}, within one {s['within_one']:.1%}, early "
              f"{s['too_early']:.1%}, late {s['too_late']:.1%}, never {s['never']:.1%}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
