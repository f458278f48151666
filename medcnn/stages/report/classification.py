"""What the cohort report shows for classification tasks: held-out metrics, ROC, calibration
and subgroups from the per-subject predictions, and a subject's cell of the subjects table
(the segmentation parts are in :mod:`medcnn.stages.report.segmentation`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcnn.metrics.binary import binary_metrics, reliability
from medcnn.report.figures import reliability_png, roc_png
from medcnn.stages.layout import read_json_if_present


def cohort_classification(
    results: Path, name: str, subjects: list[str], settings: dict[str, Any], manifest: pd.DataFrame
) -> dict[str, Any]:
    """Held-out metrics of a task from the per-subject predictions of its test patients."""
    # A bundle task has no split: none of its subjects was seen in training, so all count.
    split = read_json_if_present(results / "splits" / f"{name}.json") or {
        "test": subjects,
        "folds": [],
    }
    test = set(split.get("test", []))
    per_subject, records = {}, []
    label_name, threshold = "", 0.5
    for subject in subjects:
        prediction = read_json_if_present(results / "predict" / name / f"{subject}.json")
        if prediction is None:
            continue
        per_subject[subject] = prediction
        label_name, threshold = prediction["label"], prediction["threshold"]
        if subject not in test:
            continue
        for image in prediction["images"]:
            if str(image.get("target", "")) in ("0", "1"):
                records.append(
                    {
                        "subject": subject,
                        "series": image["series"],
                        "label": int(image["target"]),
                        "probability": float(image["probability"]),
                    }
                )
    frame = pd.DataFrame(records, columns=["subject", "series", "label", "probability"])
    labels = frame["label"].to_numpy(dtype=float)
    probs = frame["probability"].to_numpy(dtype=float)
    metrics = binary_metrics(
        labels, probs, frame["subject"].tolist(), threshold, settings["bootstrap"]
    )
    metrics["patients"] = len(test)
    figures: dict[str, bytes] = {}
    if math.isfinite(metrics["auroc"]):
        from sklearn.metrics import roc_curve  # seconds to import: cohort report only

        fpr, tpr, _ = roc_curve(labels, probs)
        figures["roc"] = roc_png(fpr, tpr, metrics["auroc"], label_name)
    calibration = reliability(labels, probs, settings["reliability_bins"]) if len(frame) else None
    if calibration:
        # The held-out probabilities are the calibrated model's: say with what, and warn
        # about thresholds that calibration put at an extreme.
        calibration.update(_fold_calibration(results, name))
        figures["reliability"] = reliability_png(
            calibration["bins"], calibration["ece"], label_name
        )
    return {
        "label": label_name,
        "test": metrics,
        "calibration": calibration,
        "subgroups": _subgroups(results, frame, manifest, settings, threshold),
        "figures": figures,
        "predictions": per_subject,
        "split": split,
    }


def _fold_calibration(results: Path, name: str) -> dict[str, Any]:
    """How the task's folds were calibrated (``method``: e.g. ``platt``, ``none`` for
    bundles from before calibration) and their thresholds' warnings, from ``metrics.json``."""
    methods, warnings = set(), []
    for path in sorted((results / "models" / name).glob("fold*/metrics.json")):
        metrics = read_json_if_present(path) or {}
        methods.add(metrics.get("calibration", {}).get("method", "none"))
        warnings += [f"{path.parent.name}: {w}" for w in metrics.get("threshold_warnings", [])]
    return {"method": ", ".join(sorted(methods)) or None, "threshold_warnings": warnings}


def _subgroups(
    results: Path,
    frame: pd.DataFrame,
    manifest: pd.DataFrame,
    settings: dict[str, Any],
    threshold: float,
) -> list[dict[str, Any]]:
    """Held-out metrics per value of each configured manifest column or sidecar key."""
    if frame.empty:
        return []
    info = manifest.set_index(["subject", "series"])
    out = []
    for column in settings["subgroups"]:
        values = []
        for subject, series in zip(frame["subject"], frame["series"], strict=True):
            row = info.loc[(subject, series)] if (subject, series) in info.index else None
            if row is None:
                values.append("")
            elif column in info.columns:
                values.append(str(row[column]))
            else:
                sidecar = read_json_if_present(results / row["sidecar"]) or {}
                values.append(str(sidecar.get(column, "")))
        values = np.array(values)
        if len(set(values)) < 2 and column not in info.columns:
            continue
        for value in sorted(set(values)):
            pick = values == value
            m = binary_metrics(
                frame["label"].to_numpy(float)[pick],
                frame["probability"].to_numpy(float)[pick],
                frame["subject"][pick].tolist(),
                threshold,
                settings["bootstrap"],
            )
            out.append({"group": column, "value": value or "(empty)", **m})
    return out


def classification_cell(task: dict[str, Any], subject: str) -> dict[str, Any]:
    """A classification task's cell of a subject: its highest probability, call and flags."""
    prediction = task["predictions"].get(subject, {"images": [], "role": ""})
    images = prediction["images"]
    return {
        "probability": max((i["probability"] for i in images), default=None),
        "predicted": any(i["predicted"] for i in images),
        "role": prediction.get("role", ""),
        "unreliable": task["saliency"]["unreliable_by_subject"].get(subject, 0),
        # images outside the model's training fingerprint (predicted or skipped)
        "quality_flags": sum(bool(i.get("quality_flags")) for i in images)
        + len(prediction.get("skipped", [])),
    }
