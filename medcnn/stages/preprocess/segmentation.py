"""The preprocess stage of segmentation tasks: pair images with labels, plan, preprocess.

A segmentation task takes the manifest's images of its modalities and dimensionality (and, with
``segmentation.series``, whose ``description`` matches), each paired with the label map of the
same subject and study (role ``mask`` for ``segmentation``, ``instances`` for
``instance_segmentation``). The plans (:func:`medcnn.planning.segmentation.make_seg_plans`)
come from the labelled cases; every case, labelled or not, is preprocessed with them.

Outputs under ``results/preprocess/{task}/``: ``plans.json``, ``index.tsv`` (columns of
:mod:`medcnn.data.index`, ``array`` the image and ``label`` the target ``.npy``, ``target``
``1`` for a labelled case, then ``source``/``label_source``: the ingest NIfTIs, relative to the
results folder) and ``arrays/{subject}/{series}.npy`` + ``{series}_label.npy`` +
``{series}_meta.json`` (what maps a prediction back onto the ingest grid).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcnn.data.index import write_index
from medcnn.ingest.manifest import SUBJECT_MANIFEST, read_manifest
from medcnn.stages.layout import model_dirs, subject_index_path

log = logging.getLogger(__name__)

#: Extra columns of a segmentation task's index.
SEG_COLUMNS = ("label", "source", "label_source", "meta")


def label_role(task: dict[str, Any]) -> str:
    """The manifest role that holds a task's labels."""
    return "instances" if task["kind"] == "instance_segmentation" else "mask"


def seg_cases(manifest: pd.DataFrame, task: dict[str, Any], name: str = "") -> list[dict]:
    """The task's images, each with its label row (or None), as manifest records.

    An image with several candidate labels in its study takes the one on its own grid (same
    shape); a label that fits no image is logged and left out.
    """
    if "role" not in manifest.columns:
        manifest = manifest.assign(role="image", description="")
    roles = manifest["role"].replace("", "image")
    images = manifest[(roles == "image") & manifest["modality"].isin(task["modalities"])]
    images = images[images["dims"].astype(int) == task["dims"]]
    pattern = task["segmentation"]["series"]
    if pattern:
        images = images[images["description"].fillna("").str.contains(pattern, regex=True)]
    labels = manifest[roles == label_role(task)]
    cases = []
    for image in images.to_dict("records"):
        candidates = labels[
            (labels["subject"] == image["subject"]) & (labels["study"] == image["study"])
        ]
        fitting = candidates[
            candidates["shape"].str.split("x").str[:3].str.join("x")
            == "x".join(image["shape"].split("x")[:3])
        ]
        label = fitting.iloc[0].to_dict() if len(fitting) else None
        if len(candidates) and label is None:
            log.warning(
                "%s: %s/%s has a label in its study but none on its grid (%s); left unlabelled",
                name,
                image["subject"],
                image["series"],
                image["shape"],
            )
        cases.append({"image": image, "label": label})
    return cases


def _preprocess_cases(
    cases: list[dict], plans: dict[str, Any], results: Path, out: Path, with_labels: bool
) -> list[dict[str, str]]:
    from medcnn.transforms.segmentation import preprocess_case
    from medcnn.transforms.spatial import SegmentationInputError

    index = []
    for case in cases:
        image, label_row = case["image"], case["label"] if with_labels else None
        rel = Path("arrays") / image["subject"] / image["series"]
        try:
            array, label, meta = preprocess_case(
                results / image["path"],
                results / label_row["path"] if label_row else None,
                plans,
            )
        except SegmentationInputError as exc:
            log.error("%s/%s: %s (left out)", image["subject"], image["series"], exc)
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(out / f"{rel}.npy", array.astype(np.float32))
        (out / f"{rel}_meta.json").write_text(json.dumps(meta) + "\n")
        if label is not None:
            np.save(out / f"{rel}_label.npy", label.astype(np.uint8))
        index.append(
            {
                "subject": image["subject"],
                "study": image["study"],
                "series": image["series"],
                "array": f"{rel}.npy",
                "target": "1" if label is not None else "",
                "label": f"{rel}_label.npy" if label is not None else "",
                "source": image["path"],
                "label_source": label_row["path"] if label_row else "",
                "meta": f"{rel}_meta.json",
            }
        )
    return index


def run_preprocess_segmentation(config: dict[str, Any], name: str) -> int:
    """Plan and preprocess every case of segmentation task ``name``; returns cases written.

    Raises:
        ValueError: no labelled case to plan from.
    """
    from medcnn.planning.segmentation import make_seg_plans

    task = config["tasks"][name]
    results = Path(config["results"])
    out = results / "preprocess" / name
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    cases = seg_cases(manifest, task, name)
    labelled = [c for c in cases if c["label"] is not None]
    if not labelled:
        raise ValueError(
            f"task {name}: no {task['modalities']} image of {task['dims']}D has a "
            f"{label_role(task)} label in its study (inputs' `masks`/`instances`, or a label "
            "series) - nothing to train on"
        )
    seg = task["segmentation"]
    plans = make_seg_plans(
        name,
        [
            {"image": str(results / c["image"]["path"]), "label": str(results / c["label"]["path"])}
            for c in labelled
        ],
        kind=task["kind"],
        modalities=task["modalities"],
        classes=seg["classes"],
        touching_class=seg["touching_class"],
        target_spacing=seg["target_spacing"],
        patch_size=seg["patch_size"],
        normalisation=seg["normalisation"],
        network=task["network"]["name"],
        features=seg["features"],
        batch_size=task["train"]["batch_size"],
        memory_budget_mb=seg["memory_mb"],
        nucleus_diameter=seg["nucleus_diameter"]
        if task["kind"] == "instance_segmentation"
        else None,
        slices=seg["slices"],
    )
    index = _preprocess_cases(cases, plans, results, out, with_labels=True)
    write_index(out / "index.tsv", index, extra_columns=SEG_COLUMNS)
    (out / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    log.info(
        "preprocess %s: %d cases (%d labelled), spacing %s, patch %s",
        name,
        len(index),
        sum(r["target"] == "1" for r in index),
        plans.get("target_spacing"),
        plans.get("patch_size"),
    )
    return len(index)


def run_preprocess_segmentation_subject(config: dict[str, Any], name: str, subject: str) -> int:
    """One subject of a segmentation bundle task, with the bundle's plans (labels kept when
    present, so a predict-only run on labelled data can still be scored)."""
    task = config["tasks"][name]
    results = Path(config["results"])
    out = results / "preprocess" / name
    plans = json.loads((model_dirs(config, name)[0] / "plans.json").read_text())
    manifest = read_manifest(results / "ingest" / subject / SUBJECT_MANIFEST)
    index = _preprocess_cases(seg_cases(manifest, task, name), plans, results, out, True)
    write_index(subject_index_path(results, name, subject), index, extra_columns=SEG_COLUMNS)
    log.info("preprocess %s %s: %d cases with the bundle's plans", name, subject, len(index))
    return len(index)
