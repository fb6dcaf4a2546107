"""Calibration: make a step score of 0.7 mean 70%. Temperature scaling, and the metrics to judge it.

``TemperatureScaler`` follows the scikit-learn estimator contract: ``__init__`` stores parameters,
``fit`` returns ``self``, learned state ends in ``_``; its state is saved as JSON
(``calibration.json`` in the artifact) and applied identically by every scoring backend through
``apply_calibration``. Labels may be soft (fractions in [0, 1]).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

CALIBRATION_FILE = "calibration.json"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class TemperatureScaler:
    """p = sigmoid(logit / T), with T fitted by minimising the log loss on held-out steps."""

    def __init__(self, bounds: tuple[float, float] = (0.05, 20.0)):
        self.bounds = bounds

    def fit(self, logits, labels) -> TemperatureScaler:
        from scipy.optimize import minimize_scalar

        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if z.shape != y.shape or z.size == 0:
            raise ValueError(f"need as many labels as logits (and at least one); got {z.shape} and {y.shape}")

        def nll(log_t: float) -> float:
            p = np.clip(_sigmoid(z / math.exp(log_t)), 1e-7, 1 - 1e-7)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

        lo, hi = (math.log(b) for b in self.bounds)
        res = minimize_scalar(nll, bounds=(lo, hi), method="bounded")
        self.temperature_ = float(math.exp(res.x))
        return self

    def predict_proba(self, logits) -> np.ndarray:
        return _sigmoid(np.asarray(logits, dtype=np.float64) / self.temperature_)

    def to_json(self) -> dict:
        return {"method": "temperature", "temperature": self.temperature_}


def apply_calibration(logits, state: dict | None) -> np.ndarray:
    """Step logits -> probabilities under a saved calibration state (None: plain sigmoid)."""
    z = np.asarray(logits, dtype=np.float64)
    if state is None:
        return _sigmoid(z)
    if state.get("method") == "temperature":
        return _sigmoid(z / float(state["temperature"]))
    raise ValueError(f"unknown calibration method {state.get('method')!r} in {CALIBRATION_FILE}")


def save_calibration(folder: str | Path, state: dict) -> None:
    Path(folder, CALIBRATION_FILE).write_text(json.dumps(state, indent=2) + "\n")


def load_calibration(folder: str | Path) -> dict | None:
    path = Path(folder, CALIBRATION_FILE)
    return json.loads(path.read_text()) if path.is_file() else None


def ece(probs, labels, n_bins: int = 10) -> float:
    """Expected calibration error with equal-mass bins (each bin holds ~the same number of steps)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    total = 0.0
    for idx in np.array_split(order, min(n_bins, p.size)):
        if idx.size:
            total += idx.size * abs(p[idx].mean() - y[idx].mean())
    return float(total / p.size)


def brier(probs, labels) -> float:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2))
