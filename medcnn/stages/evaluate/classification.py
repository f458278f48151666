"""Held-out evaluation of a task's fold ensemble, from the per-subject predictions.

Writes ``results/models/{task}/evaluation.json``::

    {"task", "kind", "labels", "split": {"folds", "test_patients"},
     "test": <medcnn.metrics.classification.evaluate() on the test patients' images>,
     "validation": {"folds": [{"fold", "mean_auroc", "mean_auroc_ci", "best_epoch"}],
                    "mean_auroc": mean over folds, "mean_auroc_sd": sd over folds}}

and ``evaluation.png`` (the test reliability diagram of every label). Thresholds are those
the predictions applied (chosen on validation data), never tuned on the test patients.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medcnn.data.index import read_index
from medcnn.metrics.classification import evaluate

log = logging.getLogger(__name__)


def reliability_png(evaluation: dict[str, Any]) -> bytes:
    """Reliability diagram of every label of an evaluation (one curve per label)."""
    from medcnn.report.figures import reliability_curves_png  # matplotlib only when drawing

    return reliability_curves_png(
        {label: (e["reliability"], e["ece"]) for label, e in evaluation["labels"].items()}
    )


def run_evaluate(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Evaluate task ``name`` on its held-out test patients; returns ``evaluation.json``.

    Raises:
        FileNotFoundError: a test patient has no prediction yet (run predict first).
    """
    task = config["tasks"][name]
    results = Path(config["results"])
    settings = task["evaluation"]
    split = json.loads((results / "splits" / f"{name}.json").read_text())
    found = _test_predictions(results, name, split["test"], settings["subgroups"])
    labels = found["labels"]
    test = evaluate(
        np.array(found["targets"], dtype=float).reshape(len(found["targets"]), len(labels)),
        np.array(found["probs"], dtype=float).reshape(len(found["probs"]), len(labels)),
        labels,
        found["thresholds"],
        kind=found["kind"],
        groups=np.array(found["groups"]),
        subgroups={c: np.array(v) for c, v in found["columns"].items()},
        n_resamples=settings["bootstrap"],
        n_bins=settings["calibration_bins"],
        seed=split.get("seed", 0),
    )
    evaluation = {
        "task": name,
        "kind": found["kind"],
        "labels": labels,
        "split": {"folds": len(split["folds"]), "test_patients": len(split["test"])},
        "test": test,
        "validation": _validation(results, name, len(split["folds"])),
    }
    out = results / "models" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    (out / "evaluation.png").write_bytes(reliability_png(test))
    log.info(
        "evaluate %s: test mean AUROC %s (95%% CI %s) over %d images of %d patients",
        name,
        test["mean_auroc"],
        test["mean_auroc_ci"],
        test["n_images"],
        test["n_patients"],
    )
    return evaluation


def _test_predictions(
    results: Path, name: str, test: list[str], subgroups: list[str]
) -> dict[str, Any]:
    """The test patients' labelled images: targets, probabilities, patients and subgroup
    values, with the labels, thresholds and kind of the predictions."""
    index = read_index(results / "preprocess" / name / "index.tsv")
    by_series = {(r["subject"], r["series"]): r for r in index.to_dict("records")}
    targets, probs, groups, columns = [], [], [], {}
    labels, thresholds, kind = None, None, "binary"
    subgroups = [c for c in subgroups if c in index.columns]
    for subject in test:
        path = results / "predict" / name / f"{subject}.json"
        prediction = json.loads(path.read_text())
        labels = prediction.get("labels", [prediction["label"]])
        thresholds = [
            prediction.get("thresholds", {}).get(lab, prediction["threshold"]) for lab in labels
        ]
        kind = prediction.get("kind", "binary")
        for image in prediction["images"]:
            if image.get("targets") is None:
                continue
            targets.append([image["targets"][lab] for lab in labels])
            probs.append([image["probabilities"][lab] for lab in labels])
            groups.append(subject)
            row = by_series.get((subject, image["series"]), {})
            for c in subgroups:
                columns.setdefault(c, []).append(row.get(c, ""))
    if labels is None:
        raise ValueError(f"task {name}: no test patients in the split")
    return {
        "targets": targets,
        "probs": probs,
        "groups": groups,
        "columns": columns,
        "labels": labels,
        "thresholds": thresholds,
        "kind": kind,
    }


def _validation(results: Path, name: str, n_folds: int) -> dict[str, Any]:
    """Each trained fold's validation AUROC and best epoch, their mean and spread."""
    folds = []
    for k in range(n_folds):
        metrics_path = results / "models" / name / f"fold{k}" / "metrics.json"
        if not metrics_path.is_file():
            continue
        metrics = json.loads(metrics_path.read_text())
        validation = metrics.get("validation", {})
        folds.append(
            {
                "fold": k,
                "best_epoch": metrics.get("best_epoch"),
                "mean_auroc": validation.get("mean_auroc", metrics.get("val_auroc")),
                "mean_auroc_ci": validation.get("mean_auroc_ci"),
                # fitted on these validation patients; predictions go through it
                "calibration": metrics.get("calibration", {"method": "none"}),
                "threshold": metrics.get("threshold"),
                "threshold_warnings": metrics.get("threshold_warnings", []),
            }
        )
    fold_aucs = [f["mean_auroc"] for f in folds if f["mean_auroc"] is not None]
    methods = sorted({f["calibration"].get("method", "none") for f in folds})
    return {
        "folds": folds,
        "calibrated": bool(folds) and methods != ["none"],
        "calibration_methods": methods,
        "threshold_warnings": [
            f"fold {f['fold']}: {w}" for f in folds for w in f["threshold_warnings"]
        ],
        "mean_auroc": float(np.mean(fold_aucs)) if fold_aucs else None,
        "mean_auroc_sd": float(np.std(fold_aucs)) if len(fold_aucs) > 1 else None,
    }
