"""Preprocess a task's images once and write the decisions to ``plans.json``.

Outputs under ``results/preprocess/{task}/``: ``plans.json``, ``index.tsv`` (one row per
image: subject, study, series, array, target, then the task's subgroup columns; see
:mod:`medcnn.data.index`) and ``arrays/{subject}/{series}.npy`` (float32,
``(1, size, size)``). Training and prediction read these instead of recomputing them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcnn.data.index import write_index
from medcnn.data.labels import LabelScheme
from medcnn.ingest.manifest import read_manifest
from medcnn.transforms.radiograph import KEY, preprocess_transforms

log = logging.getLogger(__name__)


def task_rows(manifest: pd.DataFrame, task: dict[str, Any]) -> pd.DataFrame:
    """The manifest rows a task takes (its modalities and dimensionality)."""
    rows = manifest[manifest["modality"].isin(task["modalities"])]
    return rows[rows["dims"].astype(int) == task["dims"]]


def target_of(row: pd.Series, task: dict[str, Any], scheme: LabelScheme | None = None) -> str:
    """The index's ``target`` text of a manifest row (``""`` when the label is missing).

    Binary tasks give ``"1"``/``"0"``; multi-class and multi-label tasks the ``|``-joined 0/1
    vector of :class:`~medcnn.data.labels.LabelScheme`.
    """
    scheme = scheme or LabelScheme.from_target(task["target"])
    return scheme.encode(row.get(scheme.column, ""))


def subgroup_columns(manifest: pd.DataFrame, task: dict[str, Any]) -> list[str]:
    """The configured subgroup columns that the manifest has (others are logged and skipped)."""
    wanted = task.get("evaluation", {}).get("subgroups", [])
    missing = [c for c in wanted if c not in manifest.columns]
    if missing:
        log.warning(
            "subgroup columns %s are not in the manifest (add them to labels.columns); "
            "no subgroup metrics for them",
            missing,
        )
    return [c for c in wanted if c in manifest.columns]


def make_plans(name: str, task: dict[str, Any], rows: pd.DataFrame) -> dict[str, Any]:
    """The task's preprocessing decisions, with the fingerprint of the data they came from."""
    spacing = np.array([[float(v) for v in s.split("x")[:2]] for s in rows["spacing"]])
    shape = np.array([[int(v) for v in s.split("x")[:2]] for s in rows["shape"]])
    return {
        "task": name,
        "kind": task["kind"],
        "dims": task["dims"],
        "size": task["preprocess"]["size"],
        "intensity": {
            "lower_percentile": task["preprocess"]["lower_percentile"],
            "upper_percentile": task["preprocess"]["upper_percentile"],
        },
        "clahe": task["preprocess"].get("clahe", False),
        "clahe_clip_limit": task["preprocess"].get("clahe_clip_limit", 0.01),
        "target": task["target"],
        "fingerprint": {
            "n_images": int(len(rows)),
            "modalities": sorted(rows["modality"].unique().tolist()),
            "photometric": sorted(rows["photometric"].unique().tolist()),
            "spacing_mm_median": np.median(spacing, axis=0).round(4).tolist() if len(rows) else [],
            "shape_min": shape.min(axis=0).tolist() if len(rows) else [],
            "shape_max": shape.max(axis=0).tolist() if len(rows) else [],
        },
    }


def preprocess_image(path: Path, plans: dict[str, Any]) -> np.ndarray:
    """One ingested NIfTI radiograph to the network grid: float32 ``(1, size, size)``."""
    return preprocess_transforms(plans)({KEY: str(path)})[KEY]


def run_preprocess(config: dict[str, Any], name: str) -> int:
    """Preprocess every image of task ``name``; returns the number of images written."""
    task = config["tasks"][name]
    results = Path(config["results"])
    out = results / "preprocess" / name
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    rows = task_rows(manifest, task)
    plans = make_plans(name, task, rows)
    scheme = LabelScheme.from_target(task["target"])
    if scheme.column not in manifest.columns and len(rows):
        raise ValueError(
            f"task {name}: label column {scheme.column!r} is not in the manifest "
            f"(columns: {', '.join(manifest.columns)}); list it in labels.columns"
        )
    subgroups = subgroup_columns(manifest, task)
    transform = preprocess_transforms(plans)
    index = []
    for _, row in rows.iterrows():
        array = transform({KEY: str(results / row["path"])})[KEY]
        rel = Path("arrays") / row["subject"] / f"{row['series']}.npy"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(out / rel, array)
        index.append(
            {
                "subject": row["subject"],
                "study": row["study"],
                "series": row["series"],
                "array": str(rel),
                "target": scheme.encode(row.get(scheme.column, "")),
                **{c: row[c] for c in subgroups},
            }
        )
    write_index(out / "index.tsv", index, extra_columns=subgroups)
    labelled = [r["target"] for r in index if r["target"]]
    matrix = scheme.decode(labelled) if labelled else np.zeros((0, scheme.n_outputs))
    plans["labels"] = scheme.summary()
    plans["subgroups"] = subgroups
    # Binary: the positive share, as before; otherwise one share per label.
    plans["fingerprint"]["positive_fraction"] = (
        float(matrix[:, 0].mean()) if len(matrix) and scheme.kind == "binary" else 0.0
    )
    plans["fingerprint"]["label_fractions"] = {
        label: float(matrix[:, k].mean()) if len(matrix) else 0.0
        for k, label in enumerate(scheme.labels)
    }
    if scheme.unknown:
        log.warning("preprocess %s: values not in the label scheme: %s", name, scheme.unknown)
    (out / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    log.info("preprocess %s: %d images (%d labelled)", name, len(index), len(labelled))
    return len(index)
