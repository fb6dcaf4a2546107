"""ProcessBench's metric on REAL errors: MR-GSM8K's model-written wrong solutions against reference solutions.

    .venv/bin/python benchmarks/real_errors.py MODEL [--threshold T | --summary FILE] [--backend torch]
                                                     [--max-length N] [--limit N] [--data PATH]

Erroneous side: the step-level rows of ``../shared/data/mr-gsm8k/labelled_errors.jsonl`` (``original``
and ``reversed``; ``POT`` rows are programs and are left out), read with ``prm convert``'s
``mr-gsm8k`` reader; the label is the annotators' first wrong step. Correct side: one solution per
distinct problem of those rows, its reference solution (``ground_truth_solution``: GSM8K's for the
``original`` problems, MetaMath-style for the ``reversed`` ones), taken as right at every step.
A problem whose reference is empty has no correct counterpart and is listed (``no_reference``).

Both sides are RENDERED THE SAME WAY, so that the format says nothing about which side a solution is
on and a PRM can only tell them apart by their content:

- one step per line of the reference (blank lines skipped), one step per model step;
- ``Step k:`` prefixes removed (``mr_gsm8k.strip_prefix``; the references have none);
- GSM8K calculator annotations ``<<expr=result>>`` removed, on both sides: the result they compute is
  written right after them, so nothing is lost. Most references carry them and most model outputs
  do not (in the published file: 326 of the 516 distinct references, 39 of the 527 model solutions,
  120 of their 4,359 steps; each run prints its own counts), so keeping them would mark a side;
- a reference's own closing lines (``#### N``, ``The answer is: N``) and its opening "Let's think
  step by step." line (in 74 reversed references, never in a model output) are dropped, and it ends
  instead the way that problem's model solution ends: ``#### N`` then ``The answer is: N`` (492 of
  527 model solutions), ``#### N`` alone (34) or ``The answer is: N`` alone (1), with N the reference
  answer. The mix of endings is then the same on both sides.

Scoring goes through ``prm eval``'s ``ScoreConfig``/``make_scorer`` (same backends, calibration, and
prompt handling as ``prm eval`` and the service: a prompt too long is cut from its start, and the run
counts how often). A solution whose steps alone do not fit ``--max-length`` is REFUSED: it is not
scored, its id is listed, and it counts as a miss on whichever side it is (an erroneous one as not
found, a correct one as not accepted). Counting a refused correct solution as "predicted -1, right"
would reward a PRM for what it could not read (a shorter ``--max-length`` would raise
``acc_correct``); counting it a miss on both sides means a refusal can never raise a figure. Refused
solutions are left out of the step AUROC (they have no scores).

Threshold: ``--threshold T``; or ``--summary FILE``, a training run's summary.json whose ``threshold``
was chosen on a calibration split that is NOT MR-GSM8K (``benchmarks/train_gsm8k.py`` writes one);
by default ``MODEL/../summary.json`` when it has a ``threshold``, else 0.5. Results at 0.5 are always
reported too. No threshold is ever chosen on this data: its problems come from GSM8K's test split
and it is for measuring only.

Human-readable lines, then the last line as JSON: ``acc_erroneous``, ``acc_correct``, ``f1`` at the
chosen threshold and ``*_at_0.5``; ``threshold`` and ``threshold_source``; ``n_erroneous``,
``n_correct``; ``step_auroc_to_first_error`` (erroneous solutions' steps up to and including the
first error, plus every step of the correct ones); the shares of erroneous solutions flagged at the
right step, too early, too late, never, or refused (they sum to 1); refused counts and ids;
``acc_erroneous_final_answer_right`` (the wrong solutions whose final answer is right anyway: an
outcome check cannot catch those); the same metrics per question type (``by_type``); and the render
counts. Speed: the demo PRM (SmolLM2-135M, torch fp32, max length 512) scored all 1,030 solutions
(241k tokens) in 26 minutes on this project's 2 cores while they were shared; ``--backend onnx`` or
``torch-bf16`` is faster.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_tools.flags import add_config_flags, config_from  # noqa: E402
from data_tools.formats.containers import read_rows  # noqa: E402
from data_tools.formats.gsm8k import CALCULATION  # noqa: E402
from data_tools.formats.mr_gsm8k import from_row, strip_prefix  # noqa: E402
from data_tools.schema import DataError, StepwiseExample  # noqa: E402
from prm.eval.metrics import auroc, predicted_first_error, processbench_metrics  # noqa: E402
from prm.eval.run import ScoreConfig  # noqa: E402
from prm.scoring.checks import apply_checks  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "mr-gsm8k" / "labelled_errors.jsonl"
CHECKS_ONLY = "checks"
REFUSED = -2  # the "prediction" of a solution too long to score: never equal to a label, so always a miss
_FINAL = re.compile(r"^####")
_ANSWER_IS = re.compile(r"^The answer is\b", re.IGNORECASE)
_PREAMBLE = re.compile(r"^let'?s think step by step\.?$", re.IGNORECASE)
DEFAULT_ENDING = ("#### {}", "The answer is: {}")


# --- rendering ----------------------------------------------------------------------------------------

def render_step(step: str) -> str:
    """A step as both sides show it: no ``Step k:`` prefix, no calculator annotations."""
    text = CALCULATION.sub("", strip_prefix(step)).strip()
    return text or step.strip()  # a step that was nothing but an annotation keeps it


def ending_of(steps: list[str]) -> tuple[str, ...]:
    """How a model solution closes: templates of its final ``#### N`` / ``The answer is: N`` steps."""
    out = []
    for step in steps[-2:]:
        if _FINAL.match(step):
            out.append("#### {}")
        elif _ANSWER_IS.match(step):
            out.append("The answer is: {}")
        else:
            out.clear()  # only the closing run counts
    return tuple(out) or DEFAULT_ENDING


def reference_steps(solution: str, answer: str | None, ending: tuple[str, ...]) -> list[str] | None:
    """A reference solution rendered as the model solutions are (see the module docstring); None when empty."""
    lines = [line.strip() for line in solution.splitlines() if line.strip()]
    if lines and _PREAMBLE.match(lines[0]):
        lines = lines[1:]
    while lines and (_FINAL.match(lines[-1]) or _ANSWER_IS.match(lines[-1])):
        lines.pop()
    if not lines or answer is None:
        return None
    return [render_step(line) for line in lines] + [t.format(answer) for t in ending]


# --- data -----------------------------------------------------------------------------------------------

@dataclass
class Sides:
    erroneous: list[StepwiseExample] = field(default_factory=list)
    correct: list[StepwiseExample] = field(default_factory=list)
    pot: int = 0
    no_reference: list[str] = field(default_factory=list)  # ids of a row of each problem without one
    annotated: dict = field(default_factory=dict)


def load(path: Path, limit: int = 0) -> Sides:
    """The erroneous side (POT rows out, first ``limit`` rows) and the correct side built from it."""
    sides = Sides()

    def bad(message: str) -> None:
        raise DataError(message)

    for where, row in read_rows(path, bad):
        if isinstance(row, dict) and row.get("question_type") == "POT":
            sides.pot += 1
            continue
        if limit and len(sides.erroneous) >= limit:
            break
        try:
            sides.erroneous.append(from_row(row))
        except DataError as exc:
            raise DataError(f"{path}, {where}: {exc}") from None
    if not sides.erroneous:
        raise DataError(f"{path}: no step-level MR-GSM8K rows")

    ann = Counter()
    for ex in sides.erroneous:
        marked = [bool(CALCULATION.search(s)) for s in ex.steps]
        ann["erroneous_solutions"] += any(marked)
        ann["erroneous_steps"] += sum(marked)
        ann["erroneous_steps_total"] += len(marked)
    seen: set[str] = set()
    for ex in sides.erroneous:
        if ex.prompt in seen:
            continue
        seen.add(ex.prompt)
        ref = ex.meta["reference_solution"]
        ann["references"] += 1
        ann["references_annotated"] += bool(CALCULATION.search(ref))
        steps = reference_steps(ref, ex.meta.get("answer"), ending_of(ex.steps))
        if steps is None:
            sides.no_reference.append(ex.meta["id"])
            continue
        meta = {"id": f"reference:{ex.meta['id']}", "question_type": ex.meta["question_type"], "answer": ex.meta.get("answer")}
        sides.correct.append(StepwiseExample(ex.prompt, steps, [True] * len(steps), meta))
    sides.erroneous = [StepwiseExample(ex.prompt, [render_step(s) for s in ex.steps], ex.labels, ex.meta)
                       for ex in sides.erroneous]
    sides.annotated = dict(ann)
    return sides


# --- threshold ------------------------------------------------------------------------------------------

def resolve_threshold(model: str, threshold: float | None, summary: str | None) -> tuple[float, str]:
    if threshold is not None:
        if summary:
            raise ValueError("--threshold and --summary exclude each other: give a threshold or the summary to read it from")
        return threshold, "--threshold"
    if model == CHECKS_ONLY and not summary:
        return 0.5, "default 0.5 (the checks alone: a flagged step scores 0.01, every other 1)"
    path = Path(summary) if summary else Path(model).resolve().parent / "summary.json"
    if not path.is_file():
        if summary:
            raise ValueError(f"--summary {summary}: no such file")
        return 0.5, f"default 0.5 ({path} not found)"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    value = data.get("threshold") if isinstance(data, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        if summary:
            raise ValueError(f"--summary {summary}: has no numeric 'threshold' key")
        return 0.5, f"default 0.5 ({path} has no threshold)"
    how = str(data.get("threshold_source", "threshold_source not recorded"))
    if "mr-gsm8k" in how.lower() or "labelled_errors" in how.lower():
        raise ValueError(f"{path}: its threshold was chosen on MR-GSM8K ({how}); this data is for measuring only, "
                         "choose the threshold on another split")
    return float(value), f"{path} ({how})"


def split_threshold(model: str, cfg: ScoreConfig, path: Path, data: Path) -> tuple[float, str]:
    """The threshold of max ProcessBench F1 on a labelled split that is not MR-GSM8K, scored as the run scores."""
    from prm.eval.metrics import choose_threshold
    from prm.eval.run import first_errors, read_examples

    if path.resolve() == data.resolve() or re.search(r"mr[-_]?gsm8k|labelled_errors", str(path), re.IGNORECASE):
        raise ValueError(f"--threshold-split {path}: MR-GSM8K is for measuring only; choose the threshold on another split")
    if not path.is_file():
        raise ValueError(f"--threshold-split {path}: no such file")
    split, labels, _, _ = first_errors(read_examples("processbench", str(path)))
    scores = score_all(model, cfg, split)[0]
    kept = [n for n, s in enumerate(scores) if s is not None]
    threshold, f1 = choose_threshold([labels[n] for n in kept], [scores[n] for n in kept])
    print(f"[threshold] {threshold:g}: max F1 {f1:.3f} on {path} ({len(kept)} of {len(split)} solutions scored)")
    return float(threshold), f"max F1 on {path}"


# --- scoring and metrics ---------------------------------------------------------------------------

def score_all(model: str, cfg: ScoreConfig, examples: list[StepwiseExample]) -> tuple[list, list[bool], int, bool]:
    """Step scores per example (None for one refused as too long), whether its prompt was cut to fit, the limit,
    and whether the artifact is monotone (its step checks then cap every later step too)."""
    if model == CHECKS_ONLY:
        return [apply_checks(np.ones(len(ex.steps)), ex.prompt, ex.steps).tolist() for ex in examples], \
            [False] * len(examples), 0, False
    from prm.eval.run import make_scorer
    from prm.tokenization import TooLongError, encode

    scorer = make_scorer(model, cfg)
    limit = scorer.cfg.max_length
    fits, cut = [], []
    for ex in examples:
        if scorer.cfg.rendering:  # an imported PRM (prm import): its rendering fits whole or is refused
            fits.append(_fits(scorer, ex))
            cut.append(False)
            continue
        full = encode(scorer.tokenizer, scorer.cfg.step_token_id, ex.prompt, ex.steps, None, 1 << 30)
        ok, short = True, len(full.input_ids) > limit
        if short:
            try:
                scorer.encode(ex.prompt, ex.steps)
            except TooLongError:
                ok = False
        fits.append(ok)
        cut.append(short and ok)
    kept = [i for i, ok in enumerate(fits) if ok]
    scored = scorer.score([(examples[i].prompt, examples[i].steps) for i in kept], progress="real errors") if kept else []
    out: list = [None] * len(examples)
    for i, s in zip(kept, scored, strict=True):
        out[i] = s
    return out, cut, limit, bool(scorer.cfg.monotone)


def _fits(scorer, ex) -> bool:
    from prm.tokenization import TooLongError

    try:
        scorer.encode(ex.prompt, ex.steps)
        return True
    except TooLongError:
        return False


def predictions(scores: list, threshold: float) -> list[int]:
    return [REFUSED if s is None else predicted_first_error(s, threshold) for s in scores]


def shares(labels: list[int], preds: list[int]) -> dict:
    """Where erroneous solutions were flagged: at the labelled step, before it, after it, never, or not scored."""
    kinds = Counter()
    for y, p in zip(labels, preds, strict=True):
        kinds["refused" if p == REFUSED else "never" if p < 0 else "right_step" if p == y
              else "too_early" if p < y else "too_late"] += 1
    n = len(labels)
    return {f"share_{k}": kinds[k] / n if n else None for k in ("right_step", "too_early", "too_late", "never", "refused")}


def metrics(err_labels, err_preds, n_ok, ok_preds) -> dict:
    m = processbench_metrics(list(err_labels) + [-1] * n_ok, list(err_preds) + list(ok_preds))
    return {k: m[k] for k in ("acc_erroneous", "acc_correct", "f1")}


def figures(err, ok, labels, err_scores, ok_scores, threshold: float, result: dict) -> tuple[dict, dict, list, dict]:
    """ProcessBench's metric at ``threshold`` and at 0.5, the step AUROC, where errors were flagged and the figures per
    question type, written into ``result``; returns the metrics at the threshold and at 0.5, the predicted first
    errors and the per-type figures."""
    at = {}
    for t in (threshold, 0.5):
        p_err, p_ok = predictions(err_scores, t), predictions(ok_scores, t)
        at[t] = (p_err, p_ok, metrics(labels, p_err, len(ok), p_ok))
    p_err, p_ok, main_m = at[threshold]
    result.update(main_m)
    result.update({f"{k}_at_0.5": v for k, v in at[0.5][2].items()})
    result.update(n_erroneous=len(err), n_correct=len(ok))
    result["step_auroc_to_first_error"] = step_auroc_to_first_error(labels, err_scores, ok_scores)
    result.update(shares(labels, p_err))
    right_answer = [i for i, e in enumerate(err) if e.meta.get("final_answer_correct")]
    result["acc_erroneous_final_answer_right"] = (sum(p_err[i] == labels[i] for i in right_answer) / len(right_answer)
                                                  if right_answer else None)
    result["n_final_answer_right"] = len(right_answer)
    by_type = {}
    for t in sorted({e.meta["question_type"] for e in err}):
        ie = [i for i, e in enumerate(err) if e.meta["question_type"] == t]
        io = [i for i, e in enumerate(ok) if e.meta["question_type"] == t]
        by_type[t] = {**metrics([labels[i] for i in ie], [p_err[i] for i in ie], len(io), [p_ok[i] for i in io]),
                      "n_erroneous": len(ie), "n_correct": len(io)}
    result["by_type"] = by_type
    return main_m, at[0.5][2], p_err, by_type


def step_auroc_to_first_error(err_labels, err_scores, ok_scores) -> float:
    ys, ss = [], []
    for y, s in zip(err_labels, err_scores, strict=True):
        if s is not None:
            ys += [1.0] * y + [0.0]
            ss += s[: y + 1]
    for s in ok_scores:
        if s is not None:
            ys += [1.0] * len(s)
            ss += s
    return auroc(ys, ss) if ys else math.nan


def _r(value):
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _r(v) for k, v in value.items()}
    return value


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", metavar="MODEL", help="PRM artifact folder, or 'checks' for the step checks alone (no model: "
                                                   "a step they flag scores 0.01, every other 1)")
    ap.add_argument("--data", default=str(DATA), help="MR-GSM8K rows (default ../shared/data/mr-gsm8k/labelled_errors.jsonl "
                                                      "from the repo root)")
    ap.add_argument("--threshold", type=float, help="a step scored below this is predicted wrong")
    ap.add_argument("--summary", help="read the threshold from this summary.json (chosen on a non-MR-GSM8K calibration "
                                      "split; default MODEL/../summary.json when it has one, else 0.5)")
    ap.add_argument("--threshold-split", help="choose the threshold on this labelled split (ProcessBench format, e.g. a "
                                              "training run's calib_processbench.json; never MR-GSM8K), scored as MODEL "
                                              "is here (same backend, calibration and step checks)")
    ap.add_argument("--checks-threshold", type=float,
                    help="also report, under with_checks, the same scores with the step checks applied (as the Scorer "
                         "applies them) at this threshold: one scoring pass for the network alone and with the checks "
                         "(the scores themselves are then taken without the checks)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N step-level rows (0: all)")
    add_config_flags(ap.add_argument_group("scoring (as prm eval)"), ScoreConfig)
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = config_from(args, ScoreConfig)
    problems = cfg.problems()
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        problems.append(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.checks_threshold is not None:
        if not 0.0 <= args.checks_threshold <= 1.0:
            problems.append(f"--checks-threshold must be in [0, 1], got {args.checks_threshold}")
        if args.model == CHECKS_ONLY or cfg.checks == "on":
            problems.append("--checks-threshold applies the step checks to a model's scores taken without them: "
                            "give a MODEL folder and drop --checks on")
        cfg.checks = "off"
    if args.limit < 0:
        problems.append(f"--limit must be at least 0, got {args.limit}")
    if not Path(args.data).is_file():
        problems.append(f"--data {args.data}: no such file")
    if args.model != CHECKS_ONLY and not Path(args.model).is_dir():
        problems.append(f"MODEL {args.model}: no such folder")
    if problems:
        raise SystemExit("real_errors.py: " + "; ".join(problems))
    if args.threshold_split and (args.threshold is not None or args.summary):
        raise SystemExit("real_errors.py: --threshold-split chooses the threshold; drop --threshold and --summary")
    if args.threshold_split:
        threshold, source = split_threshold(args.model, cfg, Path(args.threshold_split), Path(args.data))
    else:
        threshold, source = resolve_threshold(args.model, args.threshold, args.summary)

    start = time.perf_counter()
    sides = load(Path(args.data), args.limit)
    err, ok = sides.erroneous, sides.correct
    types = Counter(e.meta["question_type"] for e in err)
    ann = sides.annotated
    print(f"[data] {args.data}: {len(err)} step-level wrong solutions ({', '.join(f'{n} {t}' for t, n in types.items())}), "
          f"{sides.pot} POT rows left out; {len(ok)} reference solutions as the correct side "
          f"({len(sides.no_reference)} problems have none)")
    print(f"[render] calculator annotations removed from {ann.get('erroneous_solutions', 0)} of {len(err)} model "
          f"solutions ({ann.get('erroneous_steps', 0)} of {ann.get('erroneous_steps_total', 0)} steps) and "
          f"{ann.get('references_annotated', 0)} of {ann.get('references', 0)} references")

    all_scores, cut, max_length, monotone = score_all(args.model, cfg, err + ok)
    err_scores, ok_scores = all_scores[:len(err)], all_scores[len(err):]
    scoring_s = time.perf_counter() - start
    refused_err = [e.meta["id"] for e, s in zip(err, err_scores, strict=True) if s is None]
    refused_ok = [e.meta["id"] for e, s in zip(ok, ok_scores, strict=True) if s is None]
    print(f"[score] backend {cfg.backend}, max length {max_length}: {len(err) + len(ok) - len(refused_err) - len(refused_ok)} "
          f"solutions scored, refused as too long {len(refused_err)} wrong + {len(refused_ok)} correct (counted as misses), "
          f"prompt cut to fit {sum(cut[:len(err)])} + {sum(cut[len(err):])}; {scoring_s:.1f} s")

    labels = [e.first_error() for e in err]
    result: dict = {"threshold": threshold, "threshold_source": source}
    main_m, at05, p_err, by_type = figures(err, ok, labels, err_scores, ok_scores, threshold, result)
    if args.checks_threshold is not None:  # the same scores with the step checks applied, as the Scorer applies them
        checked = [None if sc is None else apply_checks(sc, ex.prompt, ex.steps, monotone).tolist()
                   for ex, sc in zip(err + ok, all_scores, strict=True)]
        result["with_checks"] = {"threshold": args.checks_threshold}
        figures(err, ok, labels, checked[:len(err)], checked[len(err):], args.checks_threshold, result["with_checks"])
    result.update(refused_erroneous=len(refused_err), refused_correct=len(refused_ok),
                  refused_erroneous_ids=refused_err, refused_correct_ids=refused_ok,
                  prompt_cut_erroneous=sum(cut[:len(err)]), prompt_cut_correct=sum(cut[len(err):]),
                  max_length=max_length, pot_rows_left_out=sides.pot, no_reference=len(sides.no_reference),
                  no_reference_ids=sides.no_reference, annotations_removed=ann, backend=cfg.backend,
                  data=str(args.data), seconds=time.perf_counter() - start)
    result = _r(result)

    def line(m: dict) -> str:
        return f"acc_erroneous {_pct(m['acc_erroneous'])}, acc_correct {_pct(m['acc_correct'])}, F1 {m['f1'] if m['f1'] is None else round(m['f1'], 3)}"

    print(f"[threshold] {threshold:g} from {source}")
    also = f"; at 0.5: {line(at05)}" if threshold != 0.5 else ""
    print(f"[result] real-error ProcessBench metric at {threshold:g}: {line(main_m)}{also}")
    print(f"[result] wrong solutions flagged at the labelled step {_pct(result['share_right_step'])}, too early "
          f"{_pct(result['share_too_early'])}, too late {_pct(result['share_too_late'])}, never "
          f"{_pct(result['share_never'])}, refused {_pct(result['share_refused'])}; step AUROC up to the first error "
          f"{result['step_auroc_to_first_error']}")
    for t, m in by_type.items():
        print(f"[result] {t}: {line(m)} ({m['n_erroneous']} wrong, {m['n_correct']} correct)")
    if "with_checks" in result:
        wc = result["with_checks"]
        print(f"[result] the same scores with the step checks, at {args.checks_threshold:g}: {line(wc)}; step AUROC up "
              f"to the first error {wc['step_auroc_to_first_error']}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    try:
        main()
    except (DataError, ValueError) as exc:
        raise SystemExit(f"real_errors.py: {exc}") from None
