"""Held-out evaluation of a segmentation task: ``results/models/{task}/evaluation.json``.

Reads the predictions of the split's test patients (:mod:`medcnn.predict.run_segmentation`
scored each labelled image against its label map) and summarises them per image, with 95%
bootstrap intervals over patients:

- ``segmentation``: Dice and HD95 (mm) per class, lesion-wise sensitivity and precision
  (lesions pooled over images), predicted and reference volumes (mL) and their agreement;
- ``instance_segmentation``: Dice, AJI, PQ (SQ, DQ) and F1 at IoU 0.5, and nucleus counts.

``evaluation.png``: predicted against reference volume (lesions) or count (nuclei), one point
per test image, with the identity line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medcnn.io.files import finite

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


def _figure(points: list[tuple[float, float]], what: str) -> bytes:
    from medcnn.report.figures import agreement_png

    return agreement_png(points, what)


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


def run_evaluate_segmentation(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Evaluate segmentation task ``name`` on its test patients; returns ``evaluation.json``.

    Raises:
        ValueError: no labelled image among the test patients.
    """
    task = config["tasks"][name]
    results = Path(config["results"])
    split = json.loads((results / "splits" / f"{name}.json").read_text())
    instance = task["kind"] == "instance_segmentation"
    predictions = [
        json.loads((results / "predict" / name / f"{subject}.json").read_text())
        for subject in split["test"]
    ]
    test, images, points = summarise(
        predictions, instance, int(task["evaluation"]["bootstrap"]), split.get("seed", 0)
    )
    if not images:
        raise ValueError(f"task {name}: no labelled test image to evaluate")
    folds = []
    for k in range(len(split["folds"])):
        path = results / "models" / name / f"fold{k}" / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            folds.append(
                {"fold": k, "best_epoch": m.get("best_epoch"), "val_dice": m.get("val_dice")}
            )
    evaluation = {
        "task": name,
        "kind": task["kind"],
        "split": {"folds": len(split["folds"]), "test_patients": len(split["test"])},
        "test": test,
        "images": images,
        "validation": {"folds": folds},
    }
    out = results / "models" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(finite(evaluation), indent=2) + "\n")
    (out / "evaluation.png").write_bytes(
        _figure(points, "nuclei per image" if instance else "lesion volume (mL)")
    )
    main = "aji" if instance else next(k for k in test if k.endswith("_dice"))
    log.info(
        "evaluate %s: mean %s %s over %d test images", name, main, test[main]["mean"], len(images)
    )
    return evaluation
