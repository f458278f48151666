from __future__ import annotations

import math

import numpy as np

from medcnn.metrics.classification import auroc, sensitivity_specificity, youden_threshold


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
