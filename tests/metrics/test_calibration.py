from __future__ import annotations

import numpy as np
import pytest

from medcnn.metrics.calibration import apply_calibration, fit_calibration, fit_platt
from medcnn.metrics.classification import calibration, threshold_warnings


def _sample(n: int, slope: float, offset: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(slope * z + offset)))).astype(float)
    return z, y


def test_platt_recovers_the_true_slope_and_offset_and_lowers_ece():
    # Over-confident logits shifted upwards, as a pos_weight-trained network gives them.
    z, y = _sample(20_000, slope=0.5, offset=-0.8)
    a, b = fit_platt(z, y)
    assert a == pytest.approx(0.5, abs=0.03)
    assert b == pytest.approx(-0.8, abs=0.05)
    fitted = fit_calibration(z[:, None], y[:, None], "binary", "platt")
    assert fitted["method"] == "platt" and fitted["n"] == 20_000
    before = calibration(y, 1 / (1 + np.exp(-z)), 10)["ece"]
    after_logits = apply_calibration(z[:, None], fitted)[:, 0]
    after = calibration(y, 1 / (1 + np.exp(-after_logits)), 10)["ece"]
    assert before > 0.15 and after < 0.02


def test_temperature_recovers_the_temperature_and_keeps_the_ranking():
    z, y = _sample(20_000, slope=0.25, offset=0.0, seed=1)
    fitted = fit_calibration(z[:, None], y[:, None], "binary", "temperature")
    assert fitted["temperature"] == pytest.approx(4.0, rel=0.08)
    scaled = apply_calibration(z[:, None], fitted)[:, 0]
    assert np.all(np.diff(scaled[np.argsort(z)]) >= 0)
    # multi-class always takes one temperature (a per-class slope would move the argmax)
    logits = np.stack([z, -z], axis=1)
    onehot = np.stack([y, 1 - y], axis=1)
    assert fit_calibration(logits, onehot, "multiclass", "platt")["method"] == "temperature"


def test_degenerate_validation_sets_give_bounded_or_identity_fits():
    assert fit_platt(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == (1.0, 0.0)
    # perfectly separated: the smoothed targets keep the slope finite and bounded
    a, _ = fit_platt(np.array([-3.0, -2.0, 2.0, 3.0]), np.array([0.0, 0.0, 1.0, 1.0]))
    assert 0.05 <= a <= 20.0
    z = np.array([[0.3], [-1.0]])
    assert np.array_equal(apply_calibration(z, {"method": "none"}), z)
    assert np.array_equal(apply_calibration(z, None), z)
    assert fit_calibration(z, np.array([[1.0], [0.0]]), "binary", "none") == {"method": "none"}
    with pytest.raises(ValueError, match="unknown calibration"):
        fit_calibration(z, z, "binary", "isotonic")


def test_thresholds_outside_005_095_are_warned_about():
    warnings = threshold_warnings({"pneumonia": 0.002, "effusion": 0.5, "mass": 0.97})
    assert len(warnings) == 2
    assert "'pneumonia' is 0.002" in warnings[0] and "'mass' is 0.97" in warnings[1]
