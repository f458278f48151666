"""Held-out evaluation of a segmentation task: ``results/models/{task}/evaluation.json``.

Reads the predictions of the split's test patients (:mod:`medcnn.stages.predict.segmentation`
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

from medcnn.io.files import finite
from medcnn.metrics.summary import summarise

log = logging.getLogger(__name__)


def run_evaluate_segmentation(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Evaluate segmentation task ``name`` on its test patients; returns ``evaluation.json``.

    Raises:
        ValueError: no labelled image among the test patients.
    """
    from medcnn.report.figures import agreement_png  # matplotlib only when drawing

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
        agreement_png(points, "nuclei per image" if instance else "lesion volume (mL)")
    )
    main = "aji" if instance else next(k for k in test if k.endswith("_dice"))
    log.info(
        "evaluate %s: mean %s %s over %d test images", name, main, test[main]["mean"], len(images)
    )
    return evaluation
