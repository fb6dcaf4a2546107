"""Calibration: make a step score of 0.7 mean 70%. Calibrators, the metrics to judge them, a plot.

Three calibrators map a step logit to a probability, all following the scikit-learn estimator
contract (``__init__`` stores parameters, ``fit`` returns ``self``, learned state ends in ``_``):

- ``TemperatureScaler``: ``sigmoid(z / T)``; one parameter, keeps the ranking, hard to overfit.
- ``PlattScaler``: ``sigmoid(a * z + b)`` (scikit-learn ``LogisticRegression`` underneath); also
  fixes a shifted threshold.
- ``IsotonicCalibrator``: a monotone step function (scikit-learn ``IsotonicRegression``); the most
  flexible, needs the most held-out steps.

``PerPositionCalibrator`` fits one of them per step position (step 1, step 2, ...); positions past
the last fitted one reuse the last. Every calibrator saves its state as plain JSON (never pickle)
into ``calibration.json`` in the artifact, and ``apply_calibration`` (``prm.scoring.calibration``)
is the one function every scoring backend applies it with. Labels may be soft (fractions in [0, 1]).
``calibrate_artifact`` is what ``prm calibrate`` (and the demo) run: score held-out steps, fit, save.

Metrics: ``ece`` (equal-mass bins), ``brier``, and ``reliability_diagram`` (a PNG; matplotlib is
imported only there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prm.artifacts import Artifact
from prm.scoring.calibration import METHODS, apply_calibration, sigmoid

CALIBRATION_FILE = Artifact.CALIBRATION


def _check_xy(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if z.shape != y.shape or z.size == 0:
        raise ValueError(f"need as many labels as logits (and at least one); got {np.shape(logits)} and {np.shape(labels)}")
    if np.any((y < 0) | (y > 1)) or not np.all(np.isfinite(z)):
        raise ValueError("labels must lie in [0, 1] and logits must be finite")
    return z, y


class TemperatureScaler:
    """p = sigmoid(logit / T), with T fitted by minimising the log loss on held-out steps."""

    def __init__(self, bounds: tuple[float, float] = (0.05, 20.0)):
        self.bounds = bounds

    def fit(self, logits, labels) -> TemperatureScaler:
        from scipy.optimize import minimize_scalar

        z, y = _check_xy(logits, labels)

        def nll(log_t: float) -> float:
            p = np.clip(sigmoid(z / math.exp(log_t)), 1e-7, 1 - 1e-7)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

        lo, hi = (math.log(b) for b in self.bounds)
        res = minimize_scalar(nll, bounds=(lo, hi), method="bounded")
        self.temperature_ = float(math.exp(res.x))
        return self

    def predict_proba(self, logits) -> np.ndarray:
        return apply_calibration(logits, self.to_json())

    def to_json(self) -> dict:
        return {"method": "temperature", "temperature": self.temperature_}


class PlattScaler:
    """p = sigmoid(a * logit + b), fitted by (nearly unregularised) logistic regression.

    Soft labels are fitted exactly: each step enters twice, as a positive weighted ``y`` and as a
    negative weighted ``1 - y``, which is the same log loss.
    """

    def __init__(self, C: float = 1e4):
        self.C = C

    def fit(self, logits, labels) -> PlattScaler:
        from sklearn.linear_model import LogisticRegression

        z, y = _check_xy(logits, labels)
        x = np.concatenate([z, z])[:, None]
        t = np.concatenate([np.ones_like(y), np.zeros_like(y)])
        w = np.concatenate([y, 1 - y])
        if w[t == 1].sum() == 0 or w[t == 0].sum() == 0:
            raise ValueError("Platt scaling needs both correct and incorrect steps among the labels")
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(x, t, sample_weight=w)
        self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def predict_proba(self, logits) -> np.ndarray:
        return apply_calibration(logits, self.to_json())

    def to_json(self) -> dict:
        return {"method": "platt", "a": self.a_, "b": self.b_}


class IsotonicCalibrator:
    """A monotone non-decreasing map logit -> probability (scikit-learn ``IsotonicRegression``).

    Saved as its breakpoints (``x`` logits, ``y`` probabilities); applied by linear interpolation
    between them and clipped at both ends, which is what ``IsotonicRegression.predict`` does.
    """

    def __init__(self, y_min: float = 1e-3, y_max: float = 1 - 1e-3):
        # Never exactly 0 or 1: search multiplies step scores, and a hard 0 from a sparse bin is a lie.
        self.y_min, self.y_max = y_min, y_max

    def fit(self, logits, labels) -> IsotonicCalibrator:
        from sklearn.isotonic import IsotonicRegression

        z, y = _check_xy(logits, labels)
        iso = IsotonicRegression(y_min=self.y_min, y_max=self.y_max, out_of_bounds="clip").fit(z, y)
        self.x_thresholds_ = iso.X_thresholds_.astype(float).tolist()
        self.y_thresholds_ = iso.y_thresholds_.astype(float).tolist()
        return self

    def predict_proba(self, logits) -> np.ndarray:
        return apply_calibration(logits, self.to_json())

    def to_json(self) -> dict:
        return {"method": "isotonic", "x": self.x_thresholds_, "y": self.y_thresholds_}


CALIBRATORS = {"temperature": TemperatureScaler, "platt": PlattScaler, "isotonic": IsotonicCalibrator}


def make_calibrator(method: str):
    if method not in CALIBRATORS:
        raise ValueError(f"--method must be one of {METHODS}, got {method!r}")
    return CALIBRATORS[method]()


class PerPositionCalibrator:
    """One calibrator per step position (0-based); positions past the last fitted one reuse the last.

    A position is fitted only when it has at least ``min_steps`` labelled steps; later positions
    are pooled into the last fitted one, so a rare long solution never gets a calibrator fitted on
    a handful of steps.
    """

    def __init__(self, method: str = "temperature", min_steps: int = 50):
        self.method = method
        self.min_steps = min_steps

    def fit(self, logits, labels, positions) -> PerPositionCalibrator:
        z, y = _check_xy(logits, labels)
        pos = np.asarray(positions, dtype=np.int64).ravel()
        if pos.shape != z.shape or np.any(pos < 0):
            raise ValueError(f"need one non-negative step position per logit; got {pos.shape} for {z.shape}")
        # Grow buckets from position 0; the tail (too few steps) is pooled into the last bucket.
        counts = np.bincount(pos)
        n_fit = 1
        while n_fit < counts.size and counts[n_fit:].sum() >= self.min_steps and counts[n_fit] >= self.min_steps:
            n_fit += 1
        bucket = np.minimum(pos, n_fit - 1)
        self.calibrators_ = [make_calibrator(self.method).fit(z[bucket == k], y[bucket == k]) for k in range(n_fit)]
        return self

    def predict_proba(self, logits, positions) -> np.ndarray:
        return apply_calibration(logits, self.to_json(), positions)

    def to_json(self) -> dict:
        return {"method": "per_position", "positions": [c.to_json() for c in self.calibrators_]}


def save_calibration(folder: str | Path, state: dict) -> None:
    """Write ``state`` as the artifact's ``calibration.json`` (and refresh its manifest)."""
    Artifact(folder).save_calibration(state)


def load_calibration(folder: str | Path) -> dict | None:
    return Artifact(folder).calibration()


def _equal_mass_bins(p: np.ndarray, n_bins: int) -> list[np.ndarray]:
    order = np.argsort(p, kind="stable")
    return [idx for idx in np.array_split(order, min(n_bins, p.size)) if idx.size]


def ece(probs, labels, n_bins: int = 10) -> float:
    """Expected calibration error with equal-mass bins (each bin holds ~the same number of steps)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    total = sum(idx.size * abs(p[idx].mean() - y[idx].mean()) for idx in _equal_mass_bins(p, n_bins))
    return float(total / p.size)


def brier(probs, labels) -> float:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def reliability_diagram(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path,
                        n_bins: int = 10, title: str = "Reliability (equal-mass bins)") -> Path:
    """A PNG with one curve per entry of ``curves`` {name: (probs, labels)}: mean score vs observed rate.

    Points are equal-mass bins (as in ``ece``); the legend carries each curve's ECE and Brier score.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, (probs, labels) in curves.items():
        p, y = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
        bins = _equal_mass_bins(p, n_bins)
        ax.plot([p[i].mean() for i in bins], [y[i].mean() for i in bins], marker="o",
                label=f"{name}: ECE {ece(p, y, n_bins):.3f}, Brier {brier(p, y):.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted step score", ylabel="observed fraction correct",
           title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def labelled_steps(logits: Sequence[np.ndarray], labels: Sequence[Sequence[float | None]]):
    """Flatten per-solution logits and labels into (logits, labels, step positions), skipping unlabelled steps."""
    rows = [(z, y, k) for zs, ys in zip(logits, labels, strict=True)
            for k, (z, y) in enumerate(zip(zs, ys, strict=True)) if y is not None]
    if not rows:
        raise ValueError("no labelled steps to calibrate on: give held-out solutions with labels")
    z, y, pos = zip(*rows, strict=True)
    return np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(pos, dtype=np.int64)


def fit_calibration(logits, labels, positions, method: str = "temperature", per_position: bool = False) -> dict:
    """Fit ``method`` on flat held-out steps and return its JSON state (what ``save_calibration`` writes)."""
    if per_position:
        return PerPositionCalibrator(method).fit(logits, labels, positions).to_json()
    return make_calibrator(method).fit(logits, labels).to_json()


def calibration_report(logits, labels, positions, state: dict) -> dict:
    """ECE and Brier before (plain sigmoid) and after ``state`` on the given steps."""
    before = apply_calibration(logits, None)
    after = apply_calibration(logits, state, positions)
    return {"steps": int(len(labels)), "ece_before": ece(before, labels), "ece_after": ece(after, labels),
            "brier_before": brier(before, labels), "brier_after": brier(after, labels)}


def calibrate_artifact(folder: str | Path, fit: Sequence, method: str = "temperature", labels: str = "hard",
                       per_position: bool = False, evaluate: Sequence | None = None, plot: str | None = None) -> dict:
    """Fit ``method`` on the held-out labelled solutions ``fit`` (``StepwiseExample``s the model was not
    trained on), write it to the artifact's ``calibration.json`` and return ECE and Brier before and
    after on ``evaluate`` (default: ``fit`` itself), plus ``state``. ``labels``: fit against hard labels
    (``meta.hard_labels``, else label > 0) or the soft ones; ``plot``: a reliability diagram PNG."""
    from prm.scoring import Scorer

    if labels not in ("hard", "soft"):
        raise ValueError(f"--labels must be 'hard' or 'soft', got {labels!r}")
    scorer = Scorer(folder, backend="torch", calibrated=False)

    def steps(examples: Sequence, what: str):
        logits = scorer.step_logits([(e.prompt, e.steps) for e in examples], progress=f"calibrate: scoring {what}")
        return labelled_steps(logits, [e.hard_labels() if labels == "hard" else e.float_labels() for e in examples])

    z, y, pos = steps(fit, "the fit split")
    state = fit_calibration(z, y, pos, method, per_position)
    Artifact(folder).save_calibration(state)
    ez, ey, epos = steps(evaluate, "the evaluation split") if evaluate is not None else (z, y, pos)
    report = {"method": method, "per_position": per_position, "fit_steps": int(len(y)),
              **calibration_report(ez, ey, epos, state), "state": state}
    if plot:
        reliability_diagram({"uncalibrated": (apply_calibration(ez, None), ey),
                             method: (apply_calibration(ez, state, epos), ey)}, plot)
        report["plot"] = plot
    return report
