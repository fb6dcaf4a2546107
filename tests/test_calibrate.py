import json

import numpy as np
import pytest

from prm.calibrate import TemperatureScaler, apply_calibration, brier, ece, load_calibration, save_calibration


def test_temperature_recovers_the_true_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20000)
    y = (rng.random(true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(float)
    overconfident = true_logits * 3.0
    scaler = TemperatureScaler().fit(overconfident, y)
    assert scaler is not None and scaler.temperature_ == pytest.approx(3.0, rel=0.05)
    assert ece(scaler.predict_proba(overconfident), y) < ece(1 / (1 + np.exp(-overconfident)), y) / 3


def test_soft_labels_are_accepted():
    z = np.array([-2.0, 0.0, 2.0, 4.0])
    y = np.array([0.1, 0.5, 0.9, 1.0])
    assert TemperatureScaler().fit(z, y).temperature_ > 0


def test_state_round_trips_and_applies_identically(tmp_path):
    z = np.linspace(-3, 3, 50)
    scaler = TemperatureScaler().fit(z, (z > 0.5).astype(float))
    save_calibration(tmp_path, scaler.to_json())
    state = load_calibration(tmp_path)
    assert json.loads((tmp_path / "calibration.json").read_text())["method"] == "temperature"
    np.testing.assert_allclose(apply_calibration(z, state), scaler.predict_proba(z))
    assert load_calibration(tmp_path / "missing") is None


def test_ece_and_brier_known_values():
    assert ece([0.9] * 10, [1] * 9 + [0], n_bins=1) == pytest.approx(0.0)
    assert ece([0.2] * 5 + [0.8] * 5, [0, 0, 0, 0, 1, 1, 1, 1, 1, 0], n_bins=2) == pytest.approx(0.0)
    assert ece([1.0, 1.0, 0.0, 0.0], [0, 0, 1, 1], n_bins=2) == pytest.approx(1.0)
    assert brier([1.0, 0.0], [1, 1]) == pytest.approx(0.5)


def test_fit_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="as many labels as logits"):
        TemperatureScaler().fit([0.1, 0.2], [1])
