from __future__ import annotations

import math

import numpy as np
import pytest

from medcnn.metrics.classification import (
    auroc,
    bootstrap_aurocs,
    calibration,
    choose_threshold,
    confusion_counts,
    evaluate,
    f1_score,
    percentile_interval,
    sensitivity_specificity,
    sensitivity_threshold,
    youden_threshold,
)


def test_auroc_hand_computed():
    # Pairs (pos, neg): (0.8>0.1) (0.8>0.4) (0.35<0.4) (0.35>0.1) -> 3 of 4 correct.
    assert auroc(np.array([1, 1, 0, 0]), np.array([0.8, 0.35, 0.4, 0.1])) == 0.75
    assert auroc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_youden_threshold_separates_a_separable_set():
    labels = np.array([0, 0, 0, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    threshold = youden_threshold(labels, probs)
    assert 0.3 < threshold <= 0.7
    assert sensitivity_specificity(labels, probs, threshold) == (1.0, 1.0)
    assert youden_threshold(np.array([1, 1]), np.array([0.2, 0.9])) == 0.5


def test_sensitivity_specificity_hand_computed():
    labels = np.array([1, 1, 1, 1, 0, 0])
    probs = np.array([0.9, 0.6, 0.4, 0.2, 0.7, 0.1])
    assert sensitivity_specificity(labels, probs, 0.5) == (0.5, 0.5)


def test_sensitivity_threshold_reaches_the_target():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    # 75 % sensitivity: the three top positives, threshold 0.7 (no false positive)
    assert sensitivity_threshold(labels, probs, 0.75) == 0.7
    # 100 %: down to 0.4, which lets the 0.6 negative through
    t = choose_threshold(labels, probs, "sensitivity", 1.0)
    assert t == 0.4 and sensitivity_specificity(labels, probs, t) == (1.0, 0.75)
    with pytest.raises(ValueError, match="unknown threshold method"):
        choose_threshold(labels, probs, "otsu")


def test_calibration_hand_computed():
    labels = np.array([0, 1, 1, 1])
    probs = np.array([0.15, 0.15, 0.85, 0.95])
    cal = calibration(labels, probs, n_bins=2)
    # bin 0..0.5: mean p 0.15, observed 0.5; bin 0.5..1: mean p 0.9, observed 1.0
    assert [b["count"] for b in cal["bins"]] == [2, 2]
    assert math.isclose(cal["ece"], 0.5 * 0.35 + 0.5 * 0.1)


def test_confusion_and_f1():
    counts = confusion_counts(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert counts == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert math.isclose(f1_score(counts), 4 / 6)


def test_bootstrap_interval_resamples_patients():
    rng = np.random.default_rng(0)
    labels = np.repeat(rng.random(40) < 0.5, 5).astype(float)  # 40 patients, 5 images each
    # a patient's images score alike (one patient effect, a little image noise)
    scores = labels * 0.3 + np.repeat(rng.random(40), 5) + 0.05 * rng.random(200)
    groups = np.repeat(np.arange(40), 5)
    by_patient = percentile_interval(
        bootstrap_aurocs(labels[:, None], scores[:, None], groups, 300, seed=1)[:, 0]
    )
    by_image = percentile_interval(
        bootstrap_aurocs(labels[:, None], scores[:, None], None, 300, seed=1)[:, 0]
    )
    point = auroc(labels, scores)
    assert by_patient[0] < point < by_patient[1]
    # correlated images: resampling patients gives the wider, honest interval
    assert by_patient[1] - by_patient[0] > by_image[1] - by_image[0]


def test_evaluate_multiclass_and_subgroups():
    targets = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    probs = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.5, 0.4, 0.1],
            [0.2, 0.7, 0.1],
            [0.6, 0.3, 0.1],
            [0.1, 0.1, 0.8],
            [0.2, 0.2, 0.6],
        ]
    )
    view = np.array(["PA", "AP", "PA", "AP", "PA", "AP"])
    result = evaluate(
        targets,
        probs,
        ["a", "b", "c"],
        [0.5, 0.5, 0.5],
        kind="multiclass",
        subgroups={"view": view},
        n_resamples=20,
    )
    assert result["confusion_matrix"]["counts"] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    assert math.isclose(result["accuracy"], 5 / 6)
    assert result["labels"]["c"]["auroc"] == 1.0
    assert result["labels"]["a"]["confusion"] == {"tp": 2, "fp": 1, "tn": 3, "fn": 0}
    assert set(result["labels"]["a"]["subgroups"]["view"]) == {"AP", "PA"}
    assert result["labels"]["a"]["subgroups"]["view"]["PA"]["images"] == 3
    assert math.isclose(
        result["mean_auroc"], np.mean([result["labels"][k]["auroc"] for k in "abc"])
    )
