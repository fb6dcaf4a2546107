"""``prm eval``: read data through ``data_tools.formats``, score it with an artifact, report the metrics.

``run_processbench`` and ``run_bon`` are what ``prm eval processbench`` and ``prm eval bon`` call; the
metrics themselves are the pure functions of ``prm.eval.metrics``. Ground truth comes from the step
labels (``StepwiseExample.hard_labels()``: ``meta.hard_labels``, or soft labels counted as right
above 0, the one rule of ``data_tools.schema``), so ProcessBench files, our injected-error GSM8K and
any labelled stepwise file evaluate alike.

A solution too long for the scoring limit (``--max-length``, else the artifact's) does not stop the
run: the others are scored, and the refused ones are listed in the result (``refused``: count and
ids) and in one warning line. They are never a free hit. ProcessBench counts a refused solution as a
miss: an erroneous one as an error not found, a correct one as not passed. Best-of-N cannot pick a
refused candidate: the PRM's pick and the PRM-weighted vote use the scored candidates of a problem
only (a problem with none scored counts as a wrong pick and a wrong weighted vote), while majority
vote, the random pick and the oracle, which need no scores, still count every candidate. Metrics
read off step scores (step AUROC, ECE, the last-step shares) cover the scored solutions, and a
threshold chosen on ``--threshold-split`` is chosen on its scored solutions.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from data_tools import jsonl
from data_tools.flags import opt, problems
from data_tools.formats import FORMATS
from data_tools.schema import StepwiseExample
from prm.config import AGGREGATIONS
from prm.eval.metrics import (
    Candidate,
    best_of_n,
    best_of_n_curve,
    choose_threshold,
    last_step_share,
    processbench,
    step_auroc,
)
from prm.scoring import BACKENDS as SCORING_BACKENDS

log = logging.getLogger(__name__)

BACKENDS = SCORING_BACKENDS


@dataclass
class ScoreConfig:
    """How an artifact scores the steps being evaluated."""

    backend: str = opt("torch", choices=BACKENDS)
    """torch (the artifact's weights), onnx (onnx/model.onnx, written by `prm export`), or another scoring backend"""
    batch_size: int = opt(16, min=1)
    """solutions per forward pass (sorted by length, so batches pad little)"""
    max_length: int = opt(0, min=0)
    """longest input in tokens, 0 for the artifact's own; raise it for long solutions, up to the backbone's
    positions (past the trained length a WARNING says the scores are extrapolation): a solution whose
    steps do not fit is never cut, it is refused, listed and counted as a miss"""
    threads: int = opt(0, min=0)
    """CPU threads for scoring (0: all cores)"""
    raw: bool = False
    """score with the plain sigmoid of the step logits, ignoring calibration.json"""
    checks: str = opt("artifact", choices=("artifact", "on", "off"))
    """step checks (a step wrong by its own numbers scores at most 0.01): as the artifact's step_checks says,
    or on, or off"""

    def problems(self) -> list[str]:
        return problems(self)


@dataclass
class ProcessBenchConfig:
    format: str = opt("processbench", choices=FORMATS)
    """format of DATA (and of --threshold-split): processbench, stepwise, trl, math-shepherd, ..."""
    threshold: float | None = None
    """a step scored below this is predicted wrong (default 0.5)"""
    threshold_split: str | None = None
    """choose the threshold that maximises F1 on this file instead (a split other than DATA)"""
    dump_scores: str | None = None
    """write each solution's id, label, prediction and step scores to this JSONL file"""

    def problems(self) -> list[str]:
        out = problems(self)
        if self.threshold is not None and self.threshold_split:
            out.append("--threshold and --threshold-split exclude each other: give a threshold or a split to choose it on")
        if self.threshold_split and not Path(self.threshold_split).exists():
            out.append(f"--threshold-split {self.threshold_split}: no such file or folder")
        return out


@dataclass
class BestOfNConfig:
    format: str = opt("stepwise", choices=FORMATS)
    """format of DATA: one row per candidate solution"""
    agg: str | None = opt(None, choices=AGGREGATIONS)
    """how step scores make a solution score: min, last, prod or mean (default: the artifact's)"""
    group_by: str = "problem_id"
    """meta key that names a candidate's problem (candidates without it are grouped by prompt text)"""
    answer_key: str = "answer"
    """meta key of the gold answer, checked against each candidate's final answer when the row has
    no meta.correct (or final_answer_correct)"""
    draws: int = opt(32, min=1)
    """random subsets per problem for the accuracy at each smaller N"""
    seed: int = 0
    """seed of those subsets"""
    dump_scores: str | None = None
    """write each candidate's problem, answer, correctness and scores to this JSONL file"""

    def problems(self) -> list[str]:
        return problems(self)


def _check(problems: list[str], model: str, data: str) -> None:
    from prm.artifacts import Artifact, ArtifactError

    if not Path(data).exists():
        problems.append(f"DATA {data}: no such file or folder")
    try:
        Artifact(model).check()
    except ArtifactError as exc:
        problems.append(f"MODEL: {exc}")
    if problems:
        raise ValueError("invalid prm eval arguments:\n  " + "\n  ".join(problems))


def make_scorer(model: str | Path, cfg: ScoreConfig):
    from prm.scoring import Scorer

    return Scorer(model, backend=cfg.backend, batch_size=cfg.batch_size, threads=cfg.threads or None,
                  calibrated=not cfg.raw, max_length=cfg.max_length or None,
                  checks={"on": True, "off": False}.get(cfg.checks))


def score(scorer, examples: Sequence[StepwiseExample], progress: str = "prm eval") -> list[list[float] | None]:
    """Step scores per solution; None for one too long for ``scorer`` (``score_each`` says why)."""
    return [None if isinstance(s, Exception) else s for s in score_each(scorer, examples, progress)]


def score_each(scorer, examples: Sequence[StepwiseExample], progress: str = "prm eval") -> list:
    """Step scores per solution, with a ``TooLongError`` in place of each one too long for ``scorer``.

    ``scorer.score`` first: it encodes every solution before its first forward pass, so a solution that
    does not fit costs only that encoding before ``scorer.score_each`` scores the rest around it.
    """
    from prm.tokenization import TooLongError

    items = [(e.prompt, e.steps) for e in examples]
    try:
        return scorer.score(items, progress=progress)
    except TooLongError:
        return scorer.score_each(items, progress=progress)


def example_id(ex: StepwiseExample, n: int) -> str:
    """How a solution is named in reports: meta.id, else where it was read from, else its index."""
    ident = ex.meta.get("id")
    return str(ident) if ident is not None else ex.origin or f"#{n}"


def refused_report(examples: Sequence[StepwiseExample], scored: Sequence, what: str, where: str, counted: str) -> dict:
    """``{"count", "ids"}`` of the refused solutions, and one warning line naming them."""
    bad = [n for n, s in enumerate(scored) if isinstance(s, Exception)]
    ids = [example_id(examples[n], n) for n in bad]
    if bad:
        limits = {getattr(scored[n], "limit", None) for n in bad} - {None}
        limit = f" (limit {max(limits)} tokens)" if limits else ""
        log.warning("%s: %d of %d %s too long to score%s, %s: %s; pass --max-length N to score them (up to the "
                    "backbone's positions)", where, len(bad), len(examples), what, limit, counted, ", ".join(ids))
    return {"count": len(bad), "ids": ids}


def read_examples(fmt: str, path: str | Path) -> list[StepwiseExample]:
    from data_tools.formats import read

    return list(read(fmt, path))


def first_errors(examples: Sequence[StepwiseExample]) -> tuple[list[StepwiseExample], list[int], list[list], int]:
    """(examples whose first error is known, their first-error labels, their hard step labels, how many
    were left out because an unlabelled step comes before any wrong one)."""
    kept, labels, hards, skipped = [], [], [], 0
    for ex in examples:
        hard = [None if h is None else float(h) for h in ex.hard_labels()]
        fe = ex.first_error()
        if fe is None:
            skipped += 1
            continue
        kept.append(ex)
        labels.append(fe)
        hards.append(hard)
    return kept, labels, hards, skipped


_SUBSET_ID = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)-\d+$")


def _subset(ex: StepwiseExample) -> str | None:
    """ProcessBench ids read 'gsm8k-12', 'omnimath-3': the name before the number is the subset."""
    ident = ex.meta.get("id")
    m = _SUBSET_ID.match(ident) if isinstance(ident, str) else None
    return m.group(1) if m else None


def run_processbench(model: str, data: str, score_cfg: ScoreConfig, cfg: ProcessBenchConfig) -> dict:
    """ProcessBench's metrics for MODEL on DATA, with step AUROC, ECE and the last-step share."""
    from prm.calibrate import ece

    _check(score_cfg.problems() + cfg.problems(), model, data)
    examples, labels, hards, skipped = first_errors(read_examples(cfg.format, data))
    if not examples:
        raise ValueError(f"{data}: no solution with a known first error (every step before the first wrong "
                         "one must be labelled)")
    if skipped:
        log.warning("%s: %d solutions left out: an unlabelled step comes before any wrong one", data, skipped)
    scorer = make_scorer(model, score_cfg)
    scored = score_each(scorer, examples)
    refused = refused_report(examples, scored, "solutions", data, "counted as misses (an erroneous one as its "
                             "error not found, a correct one as not passed)")
    scores = [None if isinstance(s, Exception) else s for s in scored]

    threshold, source, split_f1, split_refused = (0.5 if cfg.threshold is None else cfg.threshold), "fixed", None, None
    if cfg.threshold_split:
        split, split_labels, _, _ = first_errors(read_examples(cfg.format, cfg.threshold_split))
        split_scored = score_each(scorer, split)
        split_refused = refused_report(split, split_scored, "solutions", cfg.threshold_split,
                                       "left out of choosing the threshold")
        kept = [n for n, s in enumerate(split_scored) if not isinstance(s, Exception)]
        threshold, split_f1 = choose_threshold([split_labels[n] for n in kept], [split_scored[n] for n in kept])
        source = f"max F1 on {cfg.threshold_split}"

    result = _processbench(labels, scores, threshold)
    result.update(threshold_source=source)
    if split_f1 is not None:
        result["threshold_split_f1"] = split_f1
        result["threshold_split_refused"] = split_refused
    ok = [n for n, s in enumerate(scores) if s is not None]  # what the step-score metrics can read
    ok_hards, ok_scores = [hards[n] for n in ok], [scores[n] for n in ok]
    flat_y = [y for h in ok_hards for y in h if y is not None]
    flat_p = [p for h, s in zip(ok_hards, ok_scores, strict=True) for y, p in zip(h, s, strict=True) if y is not None]
    result["step_auroc"] = step_auroc(ok_hards, ok_scores)
    result["step_ece"] = ece(flat_p, flat_y)
    result.update(last_step_share([labels[n] for n in ok], ok_scores))
    result["skipped"] = skipped
    result["refused"] = refused

    subsets = [_subset(ex) for ex in examples]
    names = sorted({s for s in subsets if s is not None})
    if len(names) > 1 and None not in subsets:
        per = {}
        for name in names:
            idx = [i for i, s in enumerate(subsets) if s == name]
            per[name] = _processbench([labels[i] for i in idx], [scores[i] for i in idx], threshold)
        result["subsets"] = per
        f1s = [m["f1"] for m in per.values()]
        # ProcessBench's table reports the plain mean of the subsets' F1 ("Avg. F1").
        result["f1_subset_mean"] = None if None in f1s else float(np.mean(f1s))

    if cfg.dump_scores:
        from prm.eval.metrics import predicted_first_error

        rows = [{"id": ex.meta.get("id"), "label": y,
                 "prediction": None if s is None else predicted_first_error(s, threshold), "step_scores": s,
                 **({"refused": str(z)} if s is None else {})}
                for ex, y, s, z in zip(examples, labels, scores, scored, strict=True)]
        _write_jsonl(cfg.dump_scores, rows)
    return _jsonable(result)


REFUSED = -2
"""The predicted first error of a refused solution: equal to no label (-1 or a step), so always a miss."""


def _processbench(labels: Sequence[int], scores: Sequence[list[float] | None], threshold: float) -> dict:
    """``prm.eval.metrics.processbench``, with a refused solution (None) counted as a miss."""
    if all(s is not None for s in scores):
        return processbench(labels, scores, threshold)  # its checks of labels against step counts
    from prm.eval.metrics import predicted_first_error, processbench_metrics

    preds = [REFUSED if s is None else predicted_first_error(s, threshold) for s in scores]
    return {**processbench_metrics(labels, preds), "threshold": threshold}


def canonical_answer(answer: str | None) -> str | None:
    """A key that equal final answers share: the exact value of a number, else the normalised text."""
    from data_tools.answers import normalize, to_number

    if answer is None:
        return None
    number = to_number(answer)
    if number is not None:
        return str(Fraction(number))
    return normalize(answer) or None


def candidate_facts(ex: StepwiseExample, answer_key: str) -> tuple[str | None, bool]:
    """(canonical final answer, whether it is right) of one candidate solution."""
    from data_tools.answers import answers_match, extract_answer

    text = ex.meta.get("final_answer")
    raw = text if isinstance(text, str) else extract_answer("\n".join(ex.steps))
    for key in ("correct", "final_answer_correct"):
        if isinstance(ex.meta.get(key), bool):
            return canonical_answer(raw), ex.meta[key]
    gold = ex.meta.get(answer_key)
    if gold is None:
        where = ex.origin or f"candidate {ex.prompt[:40]!r}"
        raise ValueError(f"{where}: cannot tell whether this candidate is right: give meta.correct, "
                         f"meta.final_answer_correct, or the gold answer in meta.{answer_key} (--answer-key)")
    return canonical_answer(raw), answers_match(raw, str(gold)).correct


def run_bon(model: str, data: str, score_cfg: ScoreConfig, cfg: BestOfNConfig) -> dict:
    """Best-of-N selection accuracy of MODEL on DATA against majority vote, a random pick and the oracle."""
    from prm.artifacts import Artifact
    from prm.scoring import aggregate

    _check(score_cfg.problems() + cfg.problems(), model, data)
    examples = read_examples(cfg.format, data)
    if not examples:
        raise ValueError(f"{data}: no candidate solutions")
    agg = cfg.agg or Artifact(model).config().aggregation
    facts = [candidate_facts(ex, cfg.answer_key) for ex in examples]
    scored = score_each(make_scorer(model, score_cfg), examples)
    refused = refused_report(examples, scored, "candidates", data, "left out of the PRM's pick and the weighted "
                             "vote (never picked; majority, random and oracle still count them)")
    step_scores = [None if isinstance(s, Exception) else s for s in scored]
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        key = ex.meta.get(cfg.group_by)
        groups.setdefault(f"{cfg.group_by}:{key}" if key is not None else f"prompt:{ex.prompt}", []).append(i)
    solution = [None if s is None else aggregate(s, agg) for s in step_scores]
    problems = [[Candidate(0.0 if solution[i] is None else solution[i], facts[i][0], facts[i][1]) for i in idx]
                for idx in groups.values()]
    result = {"agg": agg, **best_of_n(problems)}
    curve = best_of_n_curve(problems, draws=cfg.draws, seed=cfg.seed)
    if refused["count"]:
        # The PRM's side sees a refused candidate as one it cannot choose: the lowest score, never right,
        # and no answer to vote with. Same problems, same candidate order and seed: the curve draws the
        # same subsets for both sides.
        picks = [[Candidate(-math.inf, None, False) if solution[i] is None else c for i, c in zip(idx, p, strict=True)]
                 for idx, p in zip(groups.values(), problems, strict=True)]
        prm_side = best_of_n(picks)
        prm_curve = best_of_n_curve(picks, draws=cfg.draws, seed=cfg.seed)
        for key in _PRM_SIDE:
            result[key] = prm_side[key]
            for k in curve:
                curve[k][key] = prm_curve[k][key]
    result["problems_all_refused"] = sum(all(solution[i] is None for i in idx) for idx in groups.values())
    result["by_n"] = {str(k): v for k, v in curve.items()}
    result["refused"] = refused
    if cfg.dump_scores:
        rows = [{"problem": key, "answer": facts[i][0], "correct": facts[i][1], "score": solution[i],
                 "step_scores": step_scores[i], **({"refused": str(scored[i])} if solution[i] is None else {})}
                for key, idx in groups.items() for i in idx]
        _write_jsonl(cfg.dump_scores, rows)
    return _jsonable(result)


_PRM_SIDE = ("prm", "weighted_majority")  # the best-of-N selectors that read PRM scores


def _write_jsonl(path: str | Path, rows: Sequence[dict]) -> None:
    jsonl.write_rows(path, (_jsonable(row) for row in rows))


def _jsonable(value):
    """NaN (a metric with one class absent) becomes null: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
