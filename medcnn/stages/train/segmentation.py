"""The train stage of segmentation tasks: one fold from the preprocessed cases and the split.

Reads ``results/preprocess/{task}/`` (plans, index, arrays) and ``results/splits/{task}.json``
and trains with :func:`medcnn.train.segmenter.train_segmenter`, which writes the fold's bundle
into ``results/models/{task}/fold{k}/``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medcnn.data.index import read_index
from medcnn.data.split import subject_role
from medcnn.stages.split import fold_split

log = logging.getLogger(__name__)


def run_train_segmentation(
    config: dict[str, Any], name: str, fold: int, threads: int = 1
) -> dict[str, Any]:
    """Train fold ``fold`` of segmentation task ``name``; returns its metrics.

    Raises:
        ValueError: the fold is not in the split, or it has no training case.
    """
    from medcnn.hardware import pick_device
    from medcnn.train.segmenter import train_segmenter

    task = config["tasks"][name]
    results = Path(config["results"])
    pre = results / "preprocess" / name
    out = results / "models" / name / f"fold{fold}"
    plans = json.loads((pre / "plans.json").read_text())
    split = fold_split(results, name, fold)
    rows = [r for r in read_index(pre / "index.tsv").to_dict("records") if r["label"]]

    def items(role: str) -> list[dict[str, Any]]:
        return [
            {
                "image": str(pre / r["array"]),
                "label": str(pre / r["label"]),
                "subject": r["subject"],
            }
            for r in rows
            if subject_role(split, r["subject"], fold) == role
        ]

    train_items, val_items = items("train"), items("val")
    if not train_items:
        raise ValueError(f"task {name} fold {fold}: no labelled training case")
    device = pick_device(config["device"])
    metrics = train_segmenter(
        train_items,
        val_items,
        plans,
        task,
        out,
        device=device,
        threads=threads,
        max_minutes=task["train"]["max_minutes"],
        clock=task["train"]["clock"],
        name=f"{name}-{plans['network']['name']}-fold{fold}",
    )
    if task["kind"] == "instance_segmentation":
        choose_fold_postprocessing(results, rows, split, fold, out, device, task)
    # the settings as configured (the bundle's config.json is what a predict-only run
    # validates against the schema)
    (out / "config.json").write_text(json.dumps(task, indent=2) + "\n")
    metrics = json.loads((out / "metrics.json").read_text())  # NaN already made null
    metrics.update(
        {
            "fold": fold,
            "n_train_patients": len({i["subject"] for i in train_items}),
            "n_val_patients": len({i["subject"] for i in val_items}),
        }
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info(
        "train %s fold %d: best val Dice %.3f at epoch %s (%d train, %d val cases)",
        name,
        fold,
        metrics["val_dice"] if metrics.get("val_dice") is not None else float("nan"),
        metrics["best_epoch"],
        len(train_items),
        len(val_items),
    )
    return metrics


def watershed_grid(seg: dict[str, Any]) -> dict[str, list[Any]]:
    """The watershed settings to try (``segmentation.watershed``: its lists, and the marker
    size as a one-value list), in the keyword names of
    :func:`medcnn.postprocess.instances.instances_from_probabilities`."""
    from medcnn.config import load_schema

    keys = load_schema()["$defs"]["task"]["properties"]["segmentation"]["properties"]
    defaults = {k: v["default"] for k, v in keys["watershed"]["properties"].items()}
    chosen = {**defaults, **(seg.get("watershed") or {})}
    return {
        "interior_threshold": [float(v) for v in chosen["interior_threshold"]],
        "foreground_threshold": [float(v) for v in chosen["foreground_threshold"]],
        "elevation": list(chosen["elevation"]),
        "min_marker_size": [int(chosen["min_marker_size"])],
        "min_relative_size": [float(v) for v in chosen["min_relative_size"]],
    }


def validation_probabilities(
    model: Any,
    plans: dict[str, Any],
    task: dict[str, Any],
    cases: list[tuple[Path, Path]],
    device: Any,
) -> tuple[list[Any], list[Any]]:
    """Class probabilities of each ``(image, instance labels)`` ingest pair, predicted as
    prediction will (the task's test-time augmentation and overlap), and the ``(H, W)``
    reference instances: what the watershed settings are chosen on."""
    import nibabel as nib
    import numpy as np

    from medcnn.config import tta_enabled
    from medcnn.inference.segmentation import predict_probabilities

    probabilities, references = [], []
    for image, labels in cases:
        prob, _, _ = predict_probabilities(
            [model],
            plans,
            image,
            device=device,
            flips=tta_enabled(task),
            overlap=float(task["segmentation"]["overlap"]),
        )
        probabilities.append(prob)
        references.append(np.asarray(nib.load(labels).dataobj)[..., 0])
    return probabilities, references


def choose_fold_postprocessing(
    results: Path,
    rows: list[dict[str, Any]],
    split: dict[str, Any],
    fold: int,
    out: Path,
    device: Any,
    task: dict[str, Any],
) -> None:
    """Choose the watershed thresholds on the fold's validation images; into bundle.json.

    Prediction reads them from the bundle, so a predict-only run splits nuclei the same way.
    """
    from medcnn.inference.segmentation import at_grid_edge, choose_postprocessing
    from medcnn.models.bundle import load_bundle

    val = [r for r in rows if subject_role(split, r["subject"], fold) == "val"]
    if not val:
        return
    model, description = load_bundle(out)
    model = model.to(device)
    probabilities, references = validation_probabilities(
        model,
        description["plans"],
        task,
        [(results / r["source"], results / r["label_source"]) for r in val],
        device,
    )
    criterion = str((task["segmentation"].get("watershed") or {}).get("score") or "pq")
    grid = watershed_grid(task["segmentation"])
    settings, score = choose_postprocessing(probabilities, references, grid, score=criterion)
    for edge in at_grid_edge(settings, grid):
        log.warning(
            "task %s fold %d: watershed %s on the validation images; the best may lie beyond "
            "(widen segmentation.watershed.%s)",
            split.get("task", "?"),
            fold,
            edge,
            edge.split()[0],
        )
    settings["min_size"] = int(task["segmentation"]["min_size"])
    description["postprocess"] = {**settings, f"validation_{criterion}": score}
    (out / "bundle.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    log.info(
        "instance post-processing chosen on %d validation images: %s (%s %.3f)",
        len(val),
        settings,
        criterion.upper(),
        score,
    )
