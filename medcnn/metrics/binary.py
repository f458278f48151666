"""Held-out metrics for the cohort report, from labels and probabilities only.

Confidence intervals resample *patients*, not images: two radiographs of one patient are not
independent evidence, and resampling images would give intervals that are too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medcnn.metrics.classification import auroc, calibration, sensitivity_specificity


def bootstrap_ci(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: Sequence[str],
    metric: Callable[[np.ndarray, np.ndarray], float],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(labels, probabilities)``, resampling groups.

    Args:
        labels: ``(N,)`` 0/1.
        probabilities: ``(N,)`` in 0..1.
        groups: ``(N,)`` patient of each image; whole patients are drawn with replacement.
        metric: e.g. :func:`medcnn.metrics.classification.auroc` (may return NaN when a
            resample lacks a class; those resamples are skipped).
        resamples: bootstrap draws (0: no interval).
        level: coverage of the interval.
        seed: random seed, so a report is reproducible.

    Returns:
        ``(low, high)``; NaNs when fewer than 10 resamples gave a finite value.
    """
    if resamples <= 0 or len(labels) == 0:
        return (float("nan"), float("nan"))
    groups = np.asarray(groups)
    names = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in names]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        value = metric(labels[pick], probabilities[pick])
        if np.isfinite(value):
            values.append(value)
    if len(values) < 10:
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability-diagram bins and ECE, as :func:`medcnn.metrics.classification.calibration`
    computes them, with NaN (not None) for empty bins so the figure code can plot them."""
    result = calibration(np.asarray(labels), np.asarray(probabilities), bins)
    nan = float("nan")
    rows = [{k: (nan if v is None else v) for k, v in row.items()} for row in result["bins"]]
    return {"bins": rows, "ece": float(result["ece"])}


def binary_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: Sequence[str],
    threshold: float,
    resamples: int = 1000,
) -> dict[str, Any]:
    """AUROC, sensitivity and specificity at ``threshold``, each with a 95% patient-bootstrap CI.

    Returns:
        ``{"images", "patients", "positives", "auroc", "auroc_ci", "sensitivity",
        "sensitivity_ci", "specificity", "specificity_ci", "threshold"}`` (NaN where
        undefined, e.g. AUROC without both classes).
    """
    n = len(labels)

    def sens(y: np.ndarray, p: np.ndarray) -> float:
        return sensitivity_specificity(y, p, threshold)[0] if len(y) else float("nan")

    def spec(y: np.ndarray, p: np.ndarray) -> float:
        return sensitivity_specificity(y, p, threshold)[1] if len(y) else float("nan")

    result: dict[str, Any] = {
        "images": n,
        "patients": len(set(groups)),
        "positives": int(labels.sum()) if n else 0,
        "threshold": float(threshold),
    }
    for name, fn in (("auroc", auroc), ("sensitivity", sens), ("specificity", spec)):
        value = fn(labels, probabilities) if n else float("nan")
        result[name] = float(value)
        result[f"{name}_ci"] = list(bootstrap_ci(labels, probabilities, groups, fn, resamples))
    return result
