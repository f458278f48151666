"""Cohort summaries of segmentation scores: means with patient-bootstrap intervals, pooled
lesion detection and volume (or count) agreement, from the per-image scores of predictions.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def bootstrap_mean(
    values: list[float], groups: list[str], n_resamples: int, seed: int = 0
) -> dict[str, Any]:
    """Mean of per-image values with a 95% percentile interval from resampling patients."""
    array = np.asarray(values, dtype=float)
    keep = np.isfinite(array)
    array, groups = array[keep], [g for g, k in zip(groups, keep, strict=True) if k]
    if not len(array):
        return {"mean": None, "median": None, "ci": [None, None], "n": 0}
    out = {
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "ci": [None, None],
        "n": int(len(array)),
    }
    patients = sorted(set(groups))
    if n_resamples and len(patients) > 1:
        rng = np.random.default_rng(seed)
        by_patient = {p: array[[g == p for g in groups]] for p in patients}
        means = []
        for _ in range(n_resamples):
            pick = rng.integers(0, len(patients), len(patients))
            means.append(np.concatenate([by_patient[patients[i]] for i in pick]).mean())
        out["ci"] = [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
    return out


def summarise(
    predictions: list[dict[str, Any]], instance: bool, n_resamples: int, seed: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]], list[tuple[float, float]]]:
    """Scores over the labelled images of some subjects' predictions.

    Returns:
        ``(test, images, points)``: the summary (each metric's mean, median and patient
        bootstrap interval; lesion detection pooled; volume agreement), one row of scores per
        image, and (reference, predicted) volume or count per image.
    """
    per_metric: dict[str, list[float]] = {}
    groups: dict[str, list[str]] = {}
    points: list[tuple[float, float]] = []
    images = []
    pooled = {"tp": 0, "fn": 0, "fp": 0}
    for prediction in predictions:
        subject = prediction["subject"]
        for image in prediction["images"]:
            metrics = image.get("metrics")
            if not metrics:
                continue
            flat: dict[str, float] = {}
            if instance:
                flat = {k: metrics[k] for k in ("dice", "aji", "pq", "sq", "dq", "f1")}
                points.append((float(image["reference_instances"]), float(image["n_instances"])))
            else:
                for cls, m in metrics.items():
                    flat[f"{cls}_dice"] = m["dice"]
                    flat[f"{cls}_hd95_mm"] = m["hd95_mm"]
                    pooled["tp"] += m["lesions_detected"]
                    pooled["fn"] += m["lesions_missed"]
                    pooled["fp"] += m["false_positive_lesions"]
                    points.append(
                        (m["reference_volume_ml"], float(image["volume_ml"].get(cls, 0.0)))
                    )
            for key, value in flat.items():
                per_metric.setdefault(key, []).append(np.nan if value is None else float(value))
                groups.setdefault(key, []).append(subject)
            images.append({"subject": subject, "series": image["series"], **flat})
    test: dict[str, Any] = {
        key: bootstrap_mean(values, groups[key], n_resamples, seed)
        for key, values in per_metric.items()
    }
    test["images"] = len(images)
    test["patients"] = len({i["subject"] for i in images})
    if not instance:
        found = pooled["tp"] + pooled["fn"]
        flagged = pooled["tp"] + pooled["fp"]
        test["lesions"] = {
            **pooled,
            "sensitivity": pooled["tp"] / found if found else None,
            "precision": pooled["tp"] / flagged if flagged else None,
        }
        ref, pred = np.array(points, dtype=float).T if points else (np.zeros(0), np.zeros(0))
        agree = len(ref) > 2 and ref.std() > 0 and pred.std() > 0
        test["volume_ml"] = {
            "mean_reference": float(ref.mean()) if len(ref) else None,
            "mean_predicted": float(pred.mean()) if len(pred) else None,
            "mean_difference": float((pred - ref).mean()) if len(ref) else None,
            "correlation": float(np.corrcoef(ref, pred)[0, 1]) if agree else None,
        }
    return test, images, points
