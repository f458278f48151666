"""Binary classification metrics (scikit-learn underneath)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present (it is undefined)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The probability threshold maximising sensitivity + specificity - 1 (Youden's J).

    Falls back to 0.5 when the labels hold one class only.
    """
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    # roc_curve's first threshold is +inf (nothing positive); keep a usable probability.
    return float(min(max(thresholds[best], 0.0), 1.0))


def sensitivity_specificity(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> tuple[float, float]:
    """Sensitivity and specificity at a threshold (NaN where a class is absent)."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(probabilities) >= threshold
    sens = float((predicted & labels).sum() / labels.sum()) if labels.any() else float("nan")
    spec = (
        float((~predicted & ~labels).sum() / (~labels).sum()) if (~labels).any() else float("nan")
    )
    return sens, spec
