"""The metrics PRM papers report, as pure functions over step scores (probabilities that a step is right).

ProcessBench (Zheng et al., 2024), computed as its official evaluation code does: a solution's
predicted first error is its first step scored below the threshold, or -1 when none is; a
prediction counts when it equals the labelled first error exactly. ``acc_erroneous`` is that
accuracy over solutions with an error (label >= 0), ``acc_correct`` over solutions without one
(label -1), and ``f1`` their harmonic mean. Papers print them in percent; here they are fractions.
A trivial predictor that calls every step right gets acc_correct 1, acc_erroneous 0, F1 0.

Best-of-N (Lightman et al., 2023; Wang et al., 2024): per problem, the candidate with the highest
aggregated PRM score is picked; compared with majority vote over final answers, a PRM-weighted vote,
a random pick (its expected accuracy, not one draw) and the oracle (any candidate right). Ties are
scored by their expectation: a tie between k candidates counts the share of them that are right.

Step AUROC over labelled steps, and the share of wrong solutions whose lowest step score sits on
the last step: a PRM that has drifted into an outcome model scores every prefix of a wrong solution
high until the end, and that share goes towards 1 (compare it with ``last_step_error_share``, the
share whose first error really is the last step).

Nothing here loads a model or reads a file; ``prm.eval.run`` does that.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data_tools.schema import first_error  # noqa: F401  (ProcessBench's label from step labels: the one rule)


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


# --- step AUROC -----------------------------------------------------------------------------------

def auroc(labels, scores) -> float:
    """Area under the ROC curve of scores against binary step correctness (label > 0.5 is right).

    Exact (the Mann-Whitney U statistic with ties counted as one half, as scikit-learn computes it);
    NaN when one class is absent.
    """
    y = np.asarray(labels, dtype=np.float64).ravel() > 0.5
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"need one score per label; got {y.size} labels and {s.size} scores")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # average 1-based rank of each score's tie group
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def step_auroc(step_labels: Sequence[Sequence], step_scores: Sequence[Sequence[float]]) -> float:
    """AUROC over every labelled step of every solution (unlabelled steps, None, are left out)."""
    ys, ss = [], []
    for labels, scores in zip(step_labels, step_scores, strict=True):
        if len(labels) != len(scores):
            raise ValueError(f"{len(labels)} labels for {len(scores)} step scores")
        for y, s in zip(labels, scores, strict=True):
            if y is not None:
                ys.append(float(y))
                ss.append(float(s))
    return auroc(ys, ss)


# --- ProcessBench -----------------------------------------------------------------------------------

def predicted_first_error(step_scores: Sequence[float], threshold: float = 0.5) -> int:
    """The first step scored below ``threshold``, or -1 when none is (ProcessBench's prediction)."""
    for i, s in enumerate(step_scores):
        if s < threshold:
            return i
    return -1


def processbench_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict:
    """acc_erroneous, acc_correct and f1 from first-error labels and predictions (both -1 for none).

    An accuracy over an empty class is None, and so is the F1 then; F1 is 0 when both are 0.
    """
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    err = [p == y for y, p in zip(labels, predictions, strict=True) if y >= 0]
    ok = [p == y for y, p in zip(labels, predictions, strict=True) if y < 0]
    a, b = _mean(err), _mean(ok)
    f1 = None if a is None or b is None else (0.0 if a + b == 0 else 2 * a * b / (a + b))
    return {"acc_erroneous": a, "acc_correct": b, "f1": f1, "n": len(labels), "n_erroneous": len(err),
            "n_correct": len(ok)}


def processbench(labels: Sequence[int], step_scores: Sequence[Sequence[float]], threshold: float = 0.5) -> dict:
    """ProcessBench's metrics for step scores at ``threshold`` (see ``processbench_metrics``)."""
    if len(labels) != len(step_scores):
        raise ValueError(f"{len(labels)} labels for {len(step_scores)} solutions")
    for y, scores in zip(labels, step_scores, strict=True):
        if not -1 <= y < len(scores):
            raise ValueError(f"first-error label {y} for a solution of {len(scores)} steps")
    preds = [predicted_first_error(s, threshold) for s in step_scores]
    return {**processbench_metrics(labels, preds), "threshold": threshold}


def choose_threshold(labels: Sequence[int], step_scores: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(threshold, F1) maximising ProcessBench F1 over every possible threshold, exactly.

    A solution with label L >= 0 is matched exactly for thresholds t with m[L] < t <= m[L-1], where m
    is the running minimum of its scores (m[-1] = +inf); one with label -1 for t <= min(scores). So
    F1 is piecewise constant between the distinct values of those bounds; every piece is tried and
    the threshold returned is the middle of the best one (its top end for the lowest piece, a point
    above the highest value for the highest), so that it does not sit on a score of this split.
    """
    if len(labels) != len(step_scores):
        raise ValueError(f"{len(labels)} labels for {len(step_scores)} solutions")
    lo, hi, mins = [], [], []
    for y, scores in zip(labels, step_scores, strict=True):
        if not len(scores):
            raise ValueError("a solution with no step scores")
        m = np.minimum.accumulate(np.asarray(scores, dtype=np.float64))
        if y < 0:
            mins.append(m[-1])
        else:
            lo.append(m[y])
            hi.append(m[y - 1] if y > 0 else math.inf)
    if not lo or not mins:
        raise ValueError("choosing a threshold needs solutions with an error and solutions without one "
                         f"(got {len(lo)} and {len(mins)})")
    lo_s, hi_s, min_s = np.sort(lo), np.sort(hi), np.sort(mins)
    values = np.unique(np.concatenate([lo_s, hi_s[np.isfinite(hi_s)], min_s]))
    cands = np.append(values, math.inf)  # t = values[k] stands for the piece (values[k-1], values[k]]
    below = lambda arr: np.searchsorted(arr, cands, side="left")  # noqa: E731  #{x < t}
    acc_err = (below(lo_s) - below(hi_s)) / len(lo)
    acc_ok = (len(mins) - below(min_s)) / len(mins)
    total = acc_err + acc_ok
    f1 = np.where(total > 0, 2 * acc_err * acc_ok / np.where(total > 0, total, 1), 0.0)
    k = int(np.argmax(f1))
    if k == 0:
        t = float(values[0])
    elif k == len(values):
        top = float(values[-1])
        t = (top + 1.0) / 2 if top < 1.0 else float(np.nextafter(top, math.inf))
    else:
        t = float((values[k - 1] + values[k]) / 2)
    return t, float(f1[k])


def last_step_share(labels: Sequence[int], step_scores: Sequence[Sequence[float]]) -> dict:
    """Among wrong solutions (label >= 0): the share whose lowest step score is on the last step
    (the first lowest, so running-minimum scores count where the minimum was reached), and the share
    whose first error really is the last step, for comparison."""
    wrong = [(y, np.asarray(s, dtype=np.float64)) for y, s in zip(labels, step_scores, strict=True) if y >= 0]
    return {"last_step_min_share": _mean([int(np.argmin(s)) == len(s) - 1 for _, s in wrong]),
            "last_step_error_share": _mean([y == len(s) - 1 for y, s in wrong]),
            "n_wrong": len(wrong)}


# --- best-of-N --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One sampled solution to a problem: its PRM score (already aggregated over steps), its final
    answer in a canonical form that equal answers share (None when it has none), and whether it is right."""

    score: float
    answer: str | None
    correct: bool


def _pick(keys: Sequence[float], rights: Sequence[float]) -> float:
    """Expected correctness of taking an argmax of ``keys`` at random among ties."""
    best = max(keys)
    tied = [r for k, r in zip(keys, rights, strict=True) if k == best]
    return sum(tied) / len(tied)


def _vote(cands: Sequence[Candidate], weighted: bool) -> float:
    groups: dict[str, list[Candidate]] = {}
    for c in cands:
        if c.answer is not None:
            groups.setdefault(c.answer, []).append(c)
    if not groups:
        return 0.0
    weight = [sum(c.score for c in g) if weighted else len(g) for g in groups.values()]
    right = [sum(c.correct for c in g) / len(g) for g in groups.values()]
    return _pick(weight, right)


def best_of_n(problems: Sequence[Sequence[Candidate]]) -> dict:
    """Selection accuracy over problems: ``prm`` (highest score), ``majority`` (most frequent answer),
    ``weighted_majority`` (answer with the highest summed score), ``random`` and ``oracle``."""
    problems = [p for p in problems if len(p)]
    if not problems:
        raise ValueError("best-of-N needs at least one problem with candidates")
    rows = [(_pick([c.score for c in p], [float(c.correct) for c in p]), _vote(p, False), _vote(p, True),
             sum(c.correct for c in p) / len(p), float(any(c.correct for c in p))) for p in problems]
    cols = np.asarray(rows).mean(axis=0)
    sizes = [len(p) for p in problems]
    return {"prm": float(cols[0]), "majority": float(cols[1]), "weighted_majority": float(cols[2]),
            "random": float(cols[3]), "oracle": float(cols[4]), "n_problems": len(problems),
            "n_min": min(sizes), "n_max": max(sizes)}


def best_of_n_curve(problems: Sequence[Sequence[Candidate]], sizes: Sequence[int] | None = None,
                    draws: int = 32, seed: int = 0) -> dict[int, dict]:
    """``best_of_n`` at smaller N: for each size k, the mean over ``draws`` random k-subsets of each
    problem's candidates (all of them when a problem has k or fewer). Sizes default to powers of two
    up to the largest N."""
    problems = [list(p) for p in problems if len(p)]
    n_max = max(len(p) for p in problems)
    if sizes is None:
        sizes = [2 ** i for i in range(int(math.log2(n_max)) + 1)]
        if sizes[-1] != n_max:
            sizes.append(n_max)
    rng = random.Random(seed)
    out = {}
    for k in sizes:
        keys = ("prm", "majority", "weighted_majority", "random", "oracle")
        acc = dict.fromkeys(keys, 0.0)
        n_draws = 1 if all(len(p) <= k for p in problems) else draws
        for _ in range(n_draws):
            subset = [p if len(p) <= k else rng.sample(p, k) for p in problems]
            res = best_of_n(subset)
            for key in keys:
                acc[key] += res[key] / n_draws
        out[k] = acc
    return out
