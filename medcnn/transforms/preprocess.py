"""Preprocess a task's images once and write the decisions to ``plans.json``.

Outputs under ``results/preprocess/{task}/``: ``plans.json``, ``index.tsv`` (one row per
image: subject, study, series, array, target) and ``arrays/{subject}/{series}.npy`` (float32,
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
from medcnn.ingest.manifest import read_manifest
from medcnn.transforms.radiograph import KEY, preprocess_transforms

log = logging.getLogger(__name__)


def task_rows(manifest: pd.DataFrame, task: dict[str, Any]) -> pd.DataFrame:
    """The manifest rows a task takes (its modalities and dimensionality)."""
    rows = manifest[manifest["modality"].isin(task["modalities"])]
    return rows[rows["dims"].astype(int) == task["dims"]]


def target_of(row: pd.Series, task: dict[str, Any]) -> str:
    """``"1"``/``"0"`` for a labelled image, ``""`` when the label is missing."""
    column = task["target"]["column"]
    value = row.get(column, "")
    if value == "" or value is None:
        return ""
    return "1" if value == task["target"]["positive"] else "0"


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
                "target": target_of(row, task),
            }
        )
    write_index(out / "index.tsv", index)
    plans["fingerprint"]["positive_fraction"] = (
        float(np.mean([r["target"] == "1" for r in index if r["target"]])) if index else 0.0
    )
    (out / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    log.info("preprocess %s: %d images", name, len(index))
    return len(index)
