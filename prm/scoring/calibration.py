"""Applying a saved calibration: step logits -> calibrated probabilities, the same for every backend.

The state is the JSON that ``prm.calibrate``'s calibrators write into the artifact's
``calibration.json``; fitting them lives there, applying them here, where scoring needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METHODS = ("temperature", "platt", "isotonic")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _apply_one(z: np.ndarray, state: dict) -> np.ndarray:
    method = state.get("method")
    if method == "temperature":
        return sigmoid(z / float(state["temperature"]))
    if method == "platt":
        return sigmoid(float(state["a"]) * z + float(state["b"]))
    if method == "isotonic":
        return np.interp(z, np.asarray(state["x"], dtype=np.float64), np.asarray(state["y"], dtype=np.float64))
    raise ValueError(f"unknown calibration method {method!r} in calibration.json; expected one of {METHODS} "
                     "or per_position: refit it with `prm calibrate`")


def apply_calibration(logits, state: dict | None, positions: Sequence[int] | None = None) -> np.ndarray:
    """Step logits -> probabilities under a saved calibration state (None: plain sigmoid).

    ``positions`` are the steps' 0-based indices in their solution; they matter only for a
    per-position state and default to ``0, 1, 2, ...`` (the logits of one solution, in order).
    """
    z = np.asarray(logits, dtype=np.float64)
    if state is None:
        return sigmoid(z)
    if state.get("method") != "per_position":
        return _apply_one(z, state)
    pos = np.arange(z.size) if positions is None else np.asarray(positions, dtype=np.int64)
    per = state["positions"]
    bucket = np.minimum(pos.reshape(z.shape), len(per) - 1)
    out = np.empty_like(z)
    for k in np.unique(bucket):
        out[bucket == k] = _apply_one(z[bucket == k], per[k])
    return out
