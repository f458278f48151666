"""Predict one subject's images with the task's trained folds (the ensemble mean and spread).

Writes ``results/predict/{task}/{subject}.json``::

    {"subject", "task", "role", "model": {"name", "weights_sha256", "folds"},
     "label", "threshold",
     "images": [{"study", "series", "probability", "spread", "fold_probabilities",
                 "predicted", "target"}]}
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.data.index import read_index
from medcnn.data.split import subject_role
from medcnn.models.bundle import load_bundle
from medcnn.train.classifier import pick_device, predict_logits

log = logging.getLogger(__name__)


def fold_dirs(results: Path, name: str, split: dict[str, Any]) -> list[Path]:
    """The bundle folders of a task's folds, in fold order."""
    return [results / "models" / name / f"fold{k}" for k in range(len(split["folds"]))]


def run_predict(config: dict[str, Any], name: str, subject: str, threads: int = 1) -> dict:
    """Predict every image of ``subject`` for task ``name``; returns the JSON written."""
    results = Path(config["results"])
    torch.set_num_threads(max(1, threads))
    device = pick_device(config["device"])
    pre = results / "preprocess" / name
    split = json.loads((results / "splits" / f"{name}.json").read_text())
    index = read_index(pre / "index.tsv")
    rows = index[index["subject"] == subject].to_dict("records")
    images = np.stack([np.load(pre / r["array"]) for r in rows]) if rows else np.zeros((0,))

    fold_probs, bundles = [], []
    for folder in fold_dirs(results, name, split):
        model, bundle = load_bundle(folder)
        model.to(device)
        logits = predict_logits(model, images, device) if rows else np.zeros(0)
        fold_probs.append(1.0 / (1.0 + np.exp(-logits)))
        bundles.append(bundle)
    probs = np.stack(fold_probs)  # (folds, images)
    threshold = float(np.mean([b["threshold"] for b in bundles]))
    mean, spread = probs.mean(axis=0), probs.std(axis=0)
    result = {
        "subject": subject,
        "task": name,
        "role": subject_role(split, subject),
        "label": bundles[0]["labels"][0],
        "threshold": threshold,
        "model": {
            "name": bundles[0]["name"].rsplit("-fold", 1)[0],
            "folds": [b["name"] for b in bundles],
            "weights_sha256": [b["weights_sha256"] for b in bundles],
        },
        "images": [
            {
                "study": r["study"],
                "series": r["series"],
                "probability": float(mean[i]),
                "spread": float(spread[i]),
                "fold_probabilities": [float(p) for p in probs[:, i]],
                "predicted": bool(mean[i] >= threshold),
                "target": r["target"],
            }
            for i, r in enumerate(rows)
        ],
    }
    out = results / "predict" / name / f"{subject}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("predict %s %s: %d images", name, subject, len(rows))
    return result
