"""Predict one subject's images with the task's trained folds (the ensemble mean and spread).

Writes ``results/predict/{task}/{subject}.json``::

    {"subject", "task", "role", "kind", "labels", "model": {"name", "weights_sha256", "folds"},
     "label", "threshold", "thresholds": {label: t}, "tta": n_views,
     "images": [{"study", "series",
                 "probabilities": {label: p}, "spreads": {label: sd},
                 "fold_probabilities_by_label": {label: [p per fold]},
                 "predicted_labels": [labels], "targets": {label: 0/1} | null,
                 "probability", "spread", "fold_probabilities", "predicted", "target"}]}

``probabilities`` is the mean over folds (each fold averaged over its test-time views first),
``spreads`` the standard deviation over folds: how much models trained on other patients
disagree. The single-label keys (``label``, ``threshold``, ``probability``, ``spread``,
``fold_probabilities``, ``predicted``, ``target`` as ``"1"``/``"0"``/``""``) are those of the
first label (a binary task's positive value), so readers of a binary prediction need nothing
else. Thresholds are each fold's validation thresholds, averaged. A multi-class image is
predicted as its most probable class; a binary or multi-label image as every label at or
above its threshold.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.config import tta_enabled
from medcnn.data.labels import LabelScheme
from medcnn.data.split import subject_role
from medcnn.hardware import pick_device
from medcnn.inference.classification import (
    TTA_VIEWS,
    decision_thresholds,
    ensemble_probabilities,
)
from medcnn.ingest.manifest import SUBJECT_MANIFEST, read_manifest
from medcnn.models.bundle import ensemble_summary, load_bundle_cached
from medcnn.planning.quality import check_image
from medcnn.stages.layout import load_split, model_dirs, subject_rows

log = logging.getLogger(__name__)


def run_predict(config: dict[str, Any], name: str, subject: str, threads: int = 1) -> dict:
    """Predict every image of ``subject`` for task ``name``; returns the JSON written."""
    results = Path(config["results"])
    task = config["tasks"][name]
    torch.set_num_threads(max(1, threads))
    device = pick_device(config["device"])
    pre = results / "preprocess" / name
    split = load_split(config, name)
    rows = subject_rows(config, name, subject)
    bundles = [load_bundle_cached(folder) for folder in model_dirs(config, name)]
    first = bundles[0][1]
    # Bundles from before label schemes were binary with one label.
    scheme = LabelScheme.from_target(task["target"])
    labels = first.get("labels", list(scheme.labels))
    if list(labels) != list(scheme.labels):
        raise ValueError(
            f"task {name}: the models predict {labels}, the config asks for "
            f"{list(scheme.labels)} (re-train after changing the target)"
        )
    flags = _quality_flags(results, subject, rows, first)
    skipped = []
    if task.get("quality") == "skip":
        skipped = [
            {"series": r["series"], "quality_flags": flags[r["series"]]}
            for r in rows
            if flags[r["series"]]
        ]
        rows = [r for r in rows if not flags[r["series"]]]
    tta = tta_enabled(task)
    if rows:
        images = np.stack([np.load(pre / r["array"]) for r in rows])
        probs = ensemble_probabilities(bundles, images, scheme, device, tta)
    else:
        probs = np.zeros((len(bundles), 0, len(labels)))
    thresholds = decision_thresholds(bundles, scheme, task["evaluation"])
    result = {
        "subject": subject,
        "task": name,
        "role": subject_role(split, subject) if split else "new",
        "kind": scheme.kind,
        "labels": list(labels),
        "label": labels[0],
        "threshold": float(thresholds[0]),
        "thresholds": {lab: float(t) for lab, t in zip(labels, thresholds, strict=True)},
        "tta": len(TTA_VIEWS) * (2 if first.get("flip") else 1) if tta else 1,
        "model": ensemble_summary(bundles),
        "images": _image_entries(rows, scheme, labels, probs, thresholds, flags),
        "skipped": skipped,
    }
    out = results / "predict" / name / f"{subject}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("predict %s %s: %d images", name, subject, len(rows))
    return result


def _quality_flags(
    results: Path, subject: str, rows: list[dict[str, Any]], bundle: dict[str, Any]
) -> dict[str, list[str]]:
    """Quality gates: each image's flags against the fingerprint of the data the model was
    trained on, by series."""
    manifest = read_manifest(results / "ingest" / subject / SUBJECT_MANIFEST)
    by_series = {r["series"]: r for r in manifest.to_dict("records")}
    fingerprint = bundle.get("plans", {}).get("fingerprint", {})
    flags = {}
    for r in rows:
        stats = (
            (float(r["intensity_p01"]), float(r["intensity_p99"]))
            if r.get("intensity_p01")
            else None
        )
        flags[r["series"]] = check_image(fingerprint, by_series[r["series"]], stats)
    return flags


def _image_entries(
    rows: list[dict[str, Any]],
    scheme: LabelScheme,
    labels: list[str],
    probs: np.ndarray,
    thresholds: list[float],
    flags: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """Each image's probabilities, fold spread, call and reference (see the module's JSON)."""
    mean, spread = probs.mean(axis=0), probs.std(axis=0)  # (images, labels)
    targets = [scheme.decode([r["target"]])[0] if r["target"] != "" else None for r in rows]
    images_out = []
    for i, r in enumerate(rows):
        if scheme.kind == "multiclass":
            decided = [labels[int(np.argmax(mean[i]))]]
        else:
            decided = [lab for k, lab in enumerate(labels) if mean[i, k] >= thresholds[k]]
        target = targets[i]
        images_out.append(
            {
                "study": r["study"],
                "series": r["series"],
                "probabilities": {lab: float(mean[i, k]) for k, lab in enumerate(labels)},
                "spreads": {lab: float(spread[i, k]) for k, lab in enumerate(labels)},
                "fold_probabilities_by_label": {
                    lab: [float(p) for p in probs[:, i, k]] for k, lab in enumerate(labels)
                },
                "predicted_labels": decided,
                "targets": None
                if target is None
                else {lab: int(target[k]) for k, lab in enumerate(labels)},
                "probability": float(mean[i, 0]),
                "spread": float(spread[i, 0]),
                "fold_probabilities": [float(p) for p in probs[:, i, 0]],
                "predicted": labels[0] in decided,
                "target": "" if target is None else str(int(target[0])),
                "quality_flags": flags[r["series"]],
            }
        )
    return images_out
