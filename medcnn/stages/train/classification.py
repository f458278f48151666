"""The train stage of classification tasks: one fold from the preprocessed arrays and the split.

Reads ``results/preprocess/{task}/`` (plans, index, arrays) and ``results/splits/{task}.json``,
trains with :func:`medcnn.train.classifier.train_fold` and writes the fold's bundle, metrics,
history, config and plans into ``results/models/{task}/fold{k}/``.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcnn.data.index import read_index
from medcnn.data.labels import LabelScheme
from medcnn.data.split import subject_role
from medcnn.hardware import pick_device
from medcnn.metrics.classification import (
    calibration,
    choose_threshold,
    evaluate,
    threshold_warnings,
)
from medcnn.models.bundle import save_bundle
from medcnn.stages.split import fold_split
from medcnn.train import distributed
from medcnn.train.checkpoint import CHECKPOINT, settings_digest
from medcnn.train.classifier import train_fold
from medcnn.transforms.radiograph import KEY

log = logging.getLogger(__name__)


def _items(
    pre: Path, rows: list[dict[str, str]], scheme: LabelScheme, subgroups: list[str]
) -> list[dict[str, Any]]:
    targets = scheme.decode([r["target"] for r in rows])
    return [
        {
            KEY: str(pre / r["array"]),
            "label": targets[i],
            "subject": r["subject"],
            **{c: r.get(c, "") for c in subgroups},
        }
        for i, r in enumerate(rows)
    ]


def run_train(config: dict[str, Any], name: str, fold: int, threads: int = 1) -> dict[str, Any]:
    """Train task ``name`` on fold ``fold``; returns the metrics written to ``metrics.json``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this is one rank of a DDP job: ``threads`` are the
    job's, shared by the ranks; only rank 0 writes outputs, and the other ranks return ``{}``.

    Raises:
        ValueError: the fold does not exist in the split, or has no training or validation
            images.
    """
    with distributed.process_group(pick_device(config["device"])) as device:
        return _run_train(config, name, fold, threads, device)


def _run_train(
    config: dict[str, Any], name: str, fold: int, threads: int, device: torch.device
) -> dict[str, Any]:
    task = config["tasks"][name]
    results = Path(config["results"])
    pre = results / "preprocess" / name
    out = results / "models" / name / f"fold{fold}"
    out.mkdir(parents=True, exist_ok=True)
    threads = max(1, threads // distributed.local_world_size())
    torch.set_num_threads(threads)

    plans = json.loads((pre / "plans.json").read_text())
    split = fold_split(results, name, fold)
    scheme = LabelScheme.from_target(task["target"])
    subgroups = plans.get("subgroups", [])
    index = read_index(pre / "index.tsv")
    rows = [r for r in index.to_dict("records") if r["target"] != ""]
    train_rows = [r for r in rows if subject_role(split, r["subject"], fold) == "train"]
    val_rows = [r for r in rows if subject_role(split, r["subject"], fold) == "val"]
    if not train_rows or not val_rows:
        raise ValueError(f"task {name} fold {fold}: empty training or validation set")
    train_items = _items(pre, train_rows, scheme, subgroups)
    val_items = _items(pre, val_rows, scheme, subgroups)
    fingerprint = settings_digest(
        {k: task[k] for k in ("target", "network", "train")},
        plans,
        split["folds"][fold],
        [(r["series"], r["target"]) for r in train_rows + val_rows],
    )
    model, summary, history = train_fold(
        train_items, val_items, scheme, task, plans, out, device, threads, fingerprint
    )
    if not distributed.is_main():
        return {}

    metrics, thresholds = _fold_metrics(
        name,
        fold,
        task,
        scheme,
        summary,
        (train_rows, val_rows),
        (train_items, val_items),
        subgroups,
        device,
        threads,
    )
    network = summary["network"]
    save_bundle(
        out,
        model,
        {
            "name": f"{name}-{network['name']}-fold{fold}",
            "task": name,
            "network": network,
            "plans": plans,
            "kind": scheme.kind,
            "labels": list(scheme.labels),
            "threshold": thresholds[0],
            "thresholds": thresholds,
            "flip": bool(task["train"]["flip"]),
            "calibration": summary["calibration"],
            # the kept model's logits on its validation images (no identifiers): what
            # medcnn.inference.classification.ensemble_calibration fits across folds
            "validation": {
                "logits": summary["validation_logits"],
                "targets": summary["validation_targets"],
            },
            "metrics": {k: v for k, v in metrics.items() if k != "validation"},
        },
    )
    with open(out / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(task, indent=2) + "\n")
    (out / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    # The bundle is whole: the checkpoint has done its job.
    (out / CHECKPOINT).unlink(missing_ok=True)
    return metrics


def _calibration_facts(
    where: str,
    scheme: LabelScheme,
    thresholds: list[float],
    summary: dict[str, Any],
    bins: int,
) -> tuple[list[str], dict[str, Any]]:
    """The thresholds' warnings (logged) and the calibration with the validation ECE
    before and after it (an in-sample figure: it was fitted on these images)."""
    warnings = threshold_warnings(dict(zip(scheme.labels, thresholds, strict=True)))
    for warning in warnings:
        log.warning("%s: %s", where, warning)
    targets = summary["val_targets"]
    calibration = {
        **summary["calibration"],
        "ece_before": _mean_ece(targets, summary["uncalibrated_probabilities"], bins),
        "ece_after": _mean_ece(targets, summary["best_probabilities"], bins),
    }
    return warnings, calibration


def _mean_ece(targets: np.ndarray, probs: np.ndarray, bins: int) -> float | None:
    """The expected calibration error averaged over labels (None without images)."""
    if len(targets) == 0:
        return None
    return float(
        np.mean(
            [calibration(targets[:, k], probs[:, k], bins)["ece"] for k in range(probs.shape[1])]
        )
    )


def _fold_metrics(
    name: str,
    fold: int,
    task: dict[str, Any],
    scheme: LabelScheme,
    summary: dict[str, Any],
    rows: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    items: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    subgroups: list[str],
    device: torch.device,
    threads: int,
) -> tuple[dict[str, Any], list[float]]:
    """What ``metrics.json`` says of a trained fold (validation metrics at the chosen
    thresholds, the training run's facts), and the thresholds of each label.

    ``rows``: the (training, validation) index rows; ``items``: the same as items."""
    (train_rows, val_rows), (train_items, val_items) = rows, items
    evaluation = task["evaluation"]
    probs, targets = summary["best_probabilities"], summary["val_targets"]
    thresholds = [
        choose_threshold(
            targets[:, k], probs[:, k], evaluation["threshold"], evaluation["sensitivity"]
        )
        for k in range(scheme.n_outputs)
    ]
    warnings, calibration = _calibration_facts(
        f"task {name} fold {fold}", scheme, thresholds, summary, evaluation["calibration_bins"]
    )
    validation = evaluate(
        targets,
        probs,
        list(scheme.labels),
        thresholds,
        kind=scheme.kind,
        groups=np.array([it["subject"] for it in val_items]),
        subgroups={c: np.array([it[c] for it in val_items]) for c in subgroups},
        n_resamples=evaluation["bootstrap"],
        n_bins=evaluation["calibration_bins"],
        seed=task["train"]["seed"],
    )
    best = summary["best"]
    metrics = {
        "task": name,
        "fold": fold,
        "kind": scheme.kind,
        "labels": list(scheme.labels),
        "best_epoch": best["epoch"],
        "kept": task["train"]["keep"],
        # mean over labels for multi-class/multi-label (the one AUROC of a binary task)
        "val_auroc": best["val_auroc"],
        "val_loss": best["val_loss"],
        # threshold of the first label (the binary positive); all in "thresholds"
        "threshold": thresholds[0],
        "thresholds": dict(zip(scheme.labels, thresholds, strict=True)),
        "threshold_method": evaluation["threshold"],
        "threshold_warnings": warnings,
        # fitted on these validation images: the ECE after it is an in-sample figure
        "calibration": calibration,
        "n_train_images": len(train_items),
        "n_val_images": len(val_items),
        "n_train_patients": len({r["subject"] for r in train_rows}),
        "n_val_patients": len({r["subject"] for r in val_rows}),
        "train_images_per_second": summary["train_images_per_second"] or 0.0,
        "data_wait_fraction": summary["data_wait_fraction"],
        "device": str(device),
        "precision": summary["precision"],
        "precision_decision": summary["precision_info"],
        "channels_last": summary["channels_last"],
        "num_workers": summary["num_workers"],
        "threads": threads,
        # DDP processes (ranks) that trained the model; threads above are per process
        "processes": distributed.world_size(),
        "balance": summary["balance"],
        "epochs_run": summary["epochs_run"],
        "stopped_early": summary["stopped_early"],
        "resumed_from_epoch": summary["resumed_from_epoch"],
        "initial_weights": summary["initial_weights"],
        "validation": validation,
    }
    return metrics, thresholds
