"""Classification metrics: AUROC with bootstrap intervals, thresholds, calibration.

Binary metrics take ``labels`` (0/1, ``(n,)``) and ``probabilities`` (``(n,)``);
:func:`evaluate` takes the ``(images, labels)`` matrices of every label scheme and is what
``metrics.json`` and ``evaluation.json`` hold.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present (it is undefined)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    from sklearn.metrics import roc_auc_score  # sklearn costs seconds to import

    return float(roc_auc_score(labels, scores))


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The probability threshold maximising sensitivity + specificity - 1 (Youden's J).

    Falls back to 0.5 when the labels hold one class only.
    """
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return 0.5
    from sklearn.metrics import roc_curve

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


def sensitivity_threshold(labels: np.ndarray, probabilities: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity reaches ``target`` (so specificity is the most
    that sensitivity allows); 0.5 when the labels hold one class only."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return 0.5
    from sklearn.metrics import roc_curve

    _, tpr, thresholds = roc_curve(labels, probabilities)
    reaching = np.flatnonzero(tpr >= target - 1e-12)
    return float(min(max(thresholds[reaching[0]], 0.0), 1.0))


def choose_threshold(
    labels: np.ndarray, probabilities: np.ndarray, method: str = "youden", sensitivity: float = 0.9
) -> float:
    """A decision threshold chosen on validation data: ``youden`` or ``sensitivity``.

    Raises:
        ValueError: unknown method.
    """
    if method == "youden":
        return youden_threshold(labels, probabilities)
    if method == "sensitivity":
        return sensitivity_threshold(labels, probabilities, sensitivity)
    raise ValueError(f"unknown threshold method {method!r} (youden, sensitivity)")


#: A decision threshold outside this range is reported: on calibrated probabilities it means
#: the classes barely separate on validation, or the validation set is too small to say.
PLAUSIBLE_THRESHOLDS = (0.05, 0.95)


def threshold_warnings(thresholds: dict[str, float]) -> list[str]:
    """A warning for each label whose threshold is below 0.05 or above 0.95."""
    low, high = PLAUSIBLE_THRESHOLDS
    return [
        f"threshold of {label!r} is {t:.3g}, outside {low}-{high}: the calibrated validation "
        "probabilities barely separate the classes (or the validation set is too small)"
        for label, t in thresholds.items()
        if not low <= t <= high
    ]


def _fast_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC as the Mann-Whitney U statistic (ties count half); NaN with one class."""
    labels = labels.astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # scipy.stats costs a second to import

    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_aurocs(
    targets: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """AUROC of every label over bootstrap resamples, resampling patients, not images.

    Images of one patient are correlated; resampling them one by one would make the
    interval too narrow. A resample that lacks a class for a label gives NaN for it.

    Args:
        targets: 0/1 ``(images, labels)``.
        scores: probabilities ``(images, labels)``.
        groups: patient of each image ``(images,)``; None treats every image as a patient.
        n_resamples: number of resamples.
        seed: seed of the resampling.

    Returns:
        float ``(n_resamples, labels)``.
    """
    targets, scores = np.asarray(targets), np.asarray(scores)
    groups = np.arange(len(targets)) if groups is None else np.asarray(groups)
    _, members = np.unique(groups, return_inverse=True)
    by_group = (
        [np.flatnonzero(members == g) for g in range(members.max() + 1)] if len(members) else []
    )
    rng = np.random.default_rng(seed)
    out = np.full((n_resamples, targets.shape[1]), np.nan)
    for b in range(n_resamples):
        if not by_group:
            break
        picked = rng.integers(0, len(by_group), len(by_group))
        rows = np.concatenate([by_group[g] for g in picked])
        for k in range(targets.shape[1]):
            out[b, k] = _fast_auroc(targets[rows, k], scores[rows, k])
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> list[float | None]:
    """The central ``level`` percentile interval of finite samples, ``[None, None]`` if none."""
    finite = np.asarray(samples)[np.isfinite(samples)]
    if not len(finite):
        return [None, None]
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]


def calibration(labels: np.ndarray, probabilities: np.ndarray, n_bins: int = 10) -> dict:
    """Expected calibration error and the reliability diagram's bins.

    Equal-width bins over 0..1; ECE is the image-weighted mean of |observed rate - mean
    probability| over the bins.

    Returns:
        ``{"ece", "bins": [{"low", "high", "count", "mean_probability", "observed"}]}``
        (empty bins have ``None`` for the last two).
    """
    labels = np.asarray(labels, dtype=float)
    probabilities = np.asarray(probabilities, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1], right=False), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        inside = which == b
        count = int(inside.sum())
        mean_p = float(probabilities[inside].mean()) if count else None
        observed = float(labels[inside].mean()) if count else None
        if count:
            ece += count / len(labels) * abs(observed - mean_p)
        bins.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": count,
                "mean_probability": mean_p,
                "observed": observed,
            }
        )
    return {"ece": float(ece) if len(labels) else float("nan"), "bins": bins}


def confusion_counts(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """True/false positives/negatives of a binary decision."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    return {
        "tp": int((labels & predicted).sum()),
        "fp": int((~labels & predicted).sum()),
        "tn": int((~labels & ~predicted).sum()),
        "fn": int((labels & ~predicted).sum()),
    }


def f1_score(counts: dict[str, int]) -> float:
    """F1 from confusion counts; NaN when there is nothing positive, predicted or true."""
    denominator = 2 * counts["tp"] + counts["fp"] + counts["fn"]
    return float(2 * counts["tp"] / denominator) if denominator else float("nan")


def _nan_to_none(value: float) -> float | None:
    # JSON has no NaN; null says "undefined" (one class present) plainly.
    return None if value is None or not np.isfinite(value) else float(value)


def evaluate(
    targets: np.ndarray,
    probabilities: np.ndarray,
    labels: list[str],
    thresholds: list[float],
    kind: str = "binary",
    groups: np.ndarray | None = None,
    subgroups: dict[str, np.ndarray] | None = None,
    n_resamples: int = 1000,
    n_bins: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric of a set of predictions, per label and averaged.

    Args:
        targets: 0/1 ``(images, labels)`` (one-hot for multi-class).
        probabilities: ``(images, labels)``.
        labels: label names.
        thresholds: one decision threshold per label (chosen on validation data).
        kind: ``binary``, ``multiclass`` (adds the class confusion matrix and accuracy of the
            arg-max) or ``multilabel``.
        groups: patient of each image, for the bootstrap; None: images are independent.
        subgroups: column name -> value per image; AUROC is given per value.
        n_resamples: bootstrap resamples for the 95 % intervals (0: none).
        n_bins: calibration bins.
        seed: bootstrap seed.

    Returns:
        ``{"n_images", "n_patients", "mean_auroc", "mean_auroc_ci", "labels": {label:
        {"auroc", "auroc_ci", "threshold", "sensitivity", "specificity", "f1", "ece",
        "reliability", "confusion", "positives", "negatives", "subgroups"}}}``, plus
        ``"confusion_matrix"``/``"accuracy"`` for multi-class. Undefined values are None.
    """
    targets = np.asarray(targets, dtype=float).reshape(len(targets), -1)
    probabilities = np.asarray(probabilities, dtype=float).reshape(len(targets), -1)
    boot = (
        bootstrap_aurocs(targets, probabilities, groups, n_resamples, seed)
        if n_resamples and len(targets)
        else np.full((0, len(labels)), np.nan)
    )
    per_label: dict[str, Any] = {}
    aucs = []
    for k, label in enumerate(labels):
        entry, auc = _label_metrics(
            targets[:, k], probabilities[:, k], float(thresholds[k]), boot[:, k], n_bins
        )
        entry["subgroups"] = _subgroup_aurocs(targets[:, k], probabilities[:, k], subgroups)
        aucs.append(auc)
        per_label[label] = entry
    finite = [a for a in aucs if np.isfinite(a)]
    with warnings.catch_warnings():
        # A resample with one class for every label has no mean: NaN, dropped below.
        warnings.simplefilter("ignore", RuntimeWarning)
        boot_mean = np.nanmean(boot, axis=1) if len(boot) else np.zeros(0)
    result: dict[str, Any] = {
        "n_images": int(len(targets)),
        "n_patients": int(len(np.unique(groups))) if groups is not None else int(len(targets)),
        "mean_auroc": float(np.mean(finite)) if finite else None,
        "mean_auroc_ci": percentile_interval(boot_mean) if len(boot) else [None, None],
        "bootstrap_resamples": int(n_resamples),
        "labels": per_label,
    }
    if kind == "multiclass" and len(targets):
        result.update(_multiclass_confusion(targets, probabilities, labels))
    return result


def _label_metrics(
    y: np.ndarray, p: np.ndarray, t: float, boot: np.ndarray, n_bins: int
) -> tuple[dict[str, Any], float]:
    """One label's entry of :func:`evaluate` (without ``subgroups``) and its AUROC (NaN when
    undefined), from its targets ``y``, probabilities ``p``, threshold ``t`` and bootstrap
    AUROCs ``boot``."""
    auc = _fast_auroc(y, p) if len(y) else float("nan")
    counts = confusion_counts(y, p >= t)
    sens, spec = sensitivity_specificity(y, p, t) if len(y) else (np.nan, np.nan)
    cal = calibration(y, p, n_bins)
    entry = {
        "auroc": _nan_to_none(auc),
        "auroc_ci": percentile_interval(boot) if len(boot) else [None, None],
        "threshold": t,
        "sensitivity": _nan_to_none(sens),
        "specificity": _nan_to_none(spec),
        "f1": _nan_to_none(f1_score(counts)),
        "ece": _nan_to_none(cal["ece"]),
        "reliability": cal["bins"],
        "confusion": counts,
        "positives": int(y.sum()),
        "negatives": int(len(y) - y.sum()),
    }
    return entry, auc


def _subgroup_aurocs(
    y: np.ndarray, p: np.ndarray, subgroups: dict[str, np.ndarray] | None
) -> dict[str, Any]:
    """Column -> value -> AUROC, images and positives of one label within that subgroup."""
    result: dict[str, Any] = {}
    for column, values in (subgroups or {}).items():
        values = np.asarray(values)
        result[column] = {
            str(v): {
                "auroc": _nan_to_none(_fast_auroc(y[values == v], p[values == v])),
                "images": int((values == v).sum()),
                "positives": int(y[values == v].sum()),
            }
            for v in sorted(set(values.tolist()))
        }
    return result


def _multiclass_confusion(
    targets: np.ndarray, probabilities: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """The class confusion matrix of the arg-max and its accuracy."""
    true = targets.argmax(axis=1)
    predicted = probabilities.argmax(axis=1)
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(matrix, (true, predicted), 1)
    return {
        "confusion_matrix": {
            "rows_true_columns_predicted": labels,
            "counts": matrix.tolist(),
        },
        "accuracy": float((true == predicted).mean()),
    }
