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
from monai.transforms import Compose

from medcnn.data.index import write_index
from medcnn.data.labels import LabelScheme
from medcnn.ingest.manifest import SUBJECT_MANIFEST, read_manifest
from medcnn.planning.quality import intensity_stats, make_fingerprint
from medcnn.stages.layout import model_dirs, subject_index_path
from medcnn.transforms.radiograph import KEY, preprocess_transforms

log = logging.getLogger(__name__)


def task_rows(manifest: pd.DataFrame, task: dict[str, Any]) -> pd.DataFrame:
    """The manifest images a task takes (its modalities and dimensionality; no label maps)."""
    rows = manifest[manifest["modality"].isin(task["modalities"])]
    if "role" in rows.columns:
        rows = rows[rows["role"].isin(["image", ""])]
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
        # Ranges without intensities here; run_preprocess adds those as it reads the images.
        "fingerprint": make_fingerprint(rows.to_dict("records"), []),
    }


def preprocess_image(path: Path, plans: dict[str, Any]) -> np.ndarray:
    """One ingested NIfTI radiograph to the network grid: float32 ``(1, size, size)``."""
    return preprocess_transforms(plans)({KEY: str(path)})[KEY]


def preprocess_rows(
    rows: pd.DataFrame,
    plans: dict[str, Any],
    scheme: LabelScheme,
    subgroups: list[str],
    results: Path,
    out: Path,
) -> tuple[list[dict[str, str]], list[tuple[float, float]]]:
    """Preprocess manifest rows into ``out/arrays/{subject}/{series}.npy``.

    Returns:
        The index rows, and each image's robust intensity range before normalisation (for
        the fingerprint and the quality gates).
    """
    transform = preprocess_transforms(plans)
    # Load once, keep the raw intensities' range, then run the rest of the chain.
    load, rest = transform.transforms[0], Compose(transform.transforms[1:])
    index, stats = [], []
    for _, row in rows.iterrows():
        loaded = load({KEY: str(results / row["path"])})
        stats.append(intensity_stats(np.asarray(loaded[KEY])))
        array = rest(loaded)[KEY]
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
                "intensity_p01": f"{stats[-1][0]:.6g}",
                "intensity_p99": f"{stats[-1][1]:.6g}",
                **{c: row[c] for c in subgroups},
            }
        )
    return index, stats


def run_preprocess_subject(config: dict[str, Any], name: str, subject: str) -> int:
    """Preprocess one subject for a bundle task, with the bundle's plans.

    Writes the arrays and ``results/preprocess/{name}/subjects/{subject}.tsv``; labels are
    optional here (new patients usually have none).
    """
    task = config["tasks"][name]
    results = Path(config["results"])
    out = results / "preprocess" / name
    plans = json.loads((model_dirs(config, name)[0] / "plans.json").read_text())
    manifest = read_manifest(results / "ingest" / subject / SUBJECT_MANIFEST)
    rows = task_rows(manifest, task)
    scheme = LabelScheme.from_target(task["target"])
    subgroups = [c for c in plans.get("subgroups", []) if c in manifest.columns]
    index, _ = preprocess_rows(rows, plans, scheme, subgroups, results, out)
    write_index(
        subject_index_path(results, name, subject),
        index,
        extra_columns=["intensity_p01", "intensity_p99", *subgroups],
    )
    log.info("preprocess %s %s: %d images with the bundle's plans", name, subject, len(index))
    return len(index)


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
    index, stats = preprocess_rows(rows, plans, scheme, subgroups, results, out)
    plans["fingerprint"] = make_fingerprint(rows.to_dict("records"), stats)
    write_index(
        out / "index.tsv", index, extra_columns=["intensity_p01", "intensity_p99", *subgroups]
    )
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
