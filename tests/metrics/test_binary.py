from __future__ import annotations

import numpy as np
import pytest

from medcnn.metrics.binary import binary_metrics, bootstrap_ci, reliability
from medcnn.metrics.classification import auroc


def test_reliability_bins_and_ece():
    probs = np.array([0.05, 0.15, 0.15, 0.85, 0.95, 0.95])
    labels = np.array([0, 0, 1, 1, 1, 1])
    result = reliability(labels, probs, bins=10)
    counts = [b["count"] for b in result["bins"]]
    assert counts == [1, 2, 0, 0, 0, 0, 0, 0, 1, 2]
    assert result["bins"][1]["observed"] == pytest.approx(0.5)
    assert result["bins"][1]["mean_probability"] == pytest.approx(0.15)
    assert np.isnan(result["bins"][5]["observed"])
    # |0-0.05|*1 + |0.5-0.15|*2 + |1-0.85|*1 + |1-0.95|*2, over 6 images
    assert result["ece"] == pytest.approx((0.05 + 0.7 + 0.15 + 0.1) / 6)


def test_bootstrap_resamples_patients_and_is_reproducible():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    probs = np.clip(labels * 0.3 + rng.random(40) * 0.7, 0, 1)
    groups = [f"p{i // 2}" for i in range(40)]  # two images per patient
    low, high = bootstrap_ci(labels, probs, groups, auroc, resamples=300, seed=1)
    assert low < auroc(labels, probs) < high
    assert 0.5 < low and high <= 1.0
    assert (low, high) == bootstrap_ci(labels, probs, groups, auroc, resamples=300, seed=1)
    assert all(np.isnan(bootstrap_ci(labels, probs, groups, auroc, resamples=0)))


def test_binary_metrics_values_and_undefined_auroc():
    labels = np.array([0, 0, 1, 1], float)
    probs = np.array([0.1, 0.6, 0.7, 0.9])
    m = binary_metrics(labels, probs, ["a", "b", "c", "d"], threshold=0.5, resamples=50)
    assert m["auroc"] == pytest.approx(1.0)
    assert m["sensitivity"] == pytest.approx(1.0) and m["specificity"] == pytest.approx(0.5)
    assert m["patients"] == 4 and m["positives"] == 2
    one_class = binary_metrics(labels[:2], probs[:2], ["a", "b"], 0.5, resamples=50)
    assert np.isnan(one_class["auroc"]) and all(np.isnan(one_class["auroc_ci"]))
