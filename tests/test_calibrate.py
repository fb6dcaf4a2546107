import json

import numpy as np
import pytest

from prm.calibrate import (
    IsotonicCalibrator,
    PerPositionCalibrator,
    PlattScaler,
    TemperatureScaler,
    apply_calibration,
    brier,
    ece,
    load_calibration,
    make_calibrator,
    reliability_diagram,
    save_calibration,
)


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


def _overconfident(n=20000, seed=0, scale=3.0, shift=0.0):
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logits))).astype(float)
    return true_logits * scale + shift, y


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_every_method_lowers_ece_and_round_trips_through_json(method, tmp_path):
    z, y = _overconfident(shift=2.0)  # miscalibrated in scale and in threshold
    zt, yt = _overconfident(seed=1, shift=2.0)
    cal = make_calibrator(method).fit(z, y)
    assert cal is not None and [k for k in vars(cal) if k.endswith("_")]  # learned state ends in _
    raw = ece(1 / (1 + np.exp(-zt)), yt)
    fitted = ece(cal.predict_proba(zt), yt)
    assert fitted < raw / 3 if method != "temperature" else fitted < raw
    save_calibration(tmp_path, cal.to_json())
    text = (tmp_path / "calibration.json").read_text()
    assert json.loads(text)["method"] == method
    np.testing.assert_allclose(apply_calibration(zt, load_calibration(tmp_path)), cal.predict_proba(zt))


def test_isotonic_matches_sklearn_predict_and_is_monotone():
    from sklearn.isotonic import IsotonicRegression

    z, y = _overconfident(n=3000)
    cal = IsotonicCalibrator().fit(z, y)
    probe = np.linspace(-30, 30, 401)
    ref = IsotonicRegression(y_min=1e-3, y_max=1 - 1e-3, out_of_bounds="clip").fit(z, y).predict(probe)
    np.testing.assert_allclose(cal.predict_proba(probe), ref, atol=1e-12)
    assert np.all(np.diff(cal.predict_proba(probe)) >= 0) and 0 < cal.predict_proba(probe).min()


def test_platt_recovers_slope_and_intercept_with_soft_labels():
    z = np.linspace(-4, 4, 2001)
    soft = 1 / (1 + np.exp(-(0.5 * z - 1.0)))  # the exact probability as a soft label
    cal = PlattScaler().fit(z, soft)
    assert cal.a_ == pytest.approx(0.5, abs=1e-3) and cal.b_ == pytest.approx(-1.0, abs=1e-3)


def test_per_position_fits_each_position_and_reuses_the_last():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 3, 6000)
    pos[:5] = 7  # a rare long tail: pooled into the last fitted position
    true = rng.normal(0, 2, pos.size)
    y = (rng.random(pos.size) < 1 / (1 + np.exp(-true))).astype(float)
    z = true * np.array([1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0])[pos]  # later steps more overconfident
    cal = PerPositionCalibrator("temperature", min_steps=50).fit(z, y, pos)
    temps = [c.temperature_ for c in cal.calibrators_]
    assert len(temps) == 3 and temps == sorted(temps) and temps[2] == pytest.approx(4.0, rel=0.1)
    state = json.loads(json.dumps(cal.to_json()))
    np.testing.assert_allclose(apply_calibration([1.0], state, [9]), apply_calibration([1.0], state, [2]))
    # one solution's logits in order: positions default to 0, 1, 2, ...
    np.testing.assert_allclose(apply_calibration([1.0, 1.0, 1.0], state), cal.predict_proba([1.0] * 3, [0, 1, 2]))
    assert ece(cal.predict_proba(z, pos), y) < ece(make_calibrator("temperature").fit(z, y).predict_proba(z), y)


def test_unknown_method_and_labels_outside_0_1_are_refused():
    with pytest.raises(ValueError, match="--method must be one of"):
        make_calibrator("beta")
    with pytest.raises(ValueError, match="unknown calibration method 'beta'"):
        apply_calibration([0.0], {"method": "beta"})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        PlattScaler().fit([0.0, 1.0], [0.0, 2.0])


def test_reliability_diagram_writes_a_png(tmp_path):
    z, y = _overconfident(n=2000)
    out = reliability_diagram({"raw": (1 / (1 + np.exp(-z)), y), "temperature": (TemperatureScaler().fit(z, y)
                               .predict_proba(z), y)}, tmp_path / "plots" / "rel.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
