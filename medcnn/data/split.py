"""Patient-level splits: every image of a patient lands on the same side.

``results/splits/{task}.json``::

    {"task": ..., "seed": ..., "test": [subjects], "unlabeled": [subjects],
     "folds": [{"train": [subjects], "val": [subjects]}]}

Splitting images instead of patients leaks: two radiographs of one patient look more alike
than two patients, and the test score then measures recognition of the patient.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from medcnn.data.index import read_index

log = logging.getLogger(__name__)


def patient_labels(index: pd.DataFrame) -> dict[str, int]:
    """One label per labelled patient: positive when any of their images is."""
    labelled = index[index["target"] != ""]
    return {
        subject: int((group["target"] == "1").any())
        for subject, group in labelled.groupby("subject", sort=True)
    }


def _stratified(subjects: list[str], labels: list[int], fraction: float, seed: int):
    n_take = max(1, round(fraction * len(subjects)))
    counts = Counter(labels)
    # Stratify only when each class can be on both sides.
    can_stratify = len(counts) > 1 and min(counts.values()) >= 2
    return train_test_split(
        subjects,
        test_size=n_take,
        random_state=seed,
        stratify=labels if can_stratify else None,
    )


def make_split(
    index: pd.DataFrame, test_fraction: float, val_fraction: float, seed: int
) -> dict[str, Any]:
    """Split the patients of an index into train, validation and test.

    Raises:
        ValueError: fewer than 3 labelled patients (no split can hold out anything).
    """
    labels = patient_labels(index)
    subjects = sorted(labels)
    if len(subjects) < 3:
        raise ValueError(f"need at least 3 labelled patients to split, found {len(subjects)}")
    rest, test = _stratified(subjects, [labels[s] for s in subjects], test_fraction, seed)
    train, val = _stratified(rest, [labels[s] for s in rest], val_fraction, seed)
    unlabeled = sorted(set(index["subject"]) - set(subjects))
    return {
        "seed": seed,
        "test": sorted(test),
        "unlabeled": unlabeled,
        "folds": [{"train": sorted(train), "val": sorted(val)}],
    }


def run_split(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Write ``results/splits/{name}.json`` for task ``name``."""
    task = config["tasks"][name]
    results = Path(config["results"])
    index = read_index(results / "preprocess" / name / "index.tsv")
    split = {"task": name, **make_split(index, **task["split"])}
    out = results / "splits" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(split, indent=2) + "\n")
    fold = split["folds"][0]
    log.info(
        "split %s: %d train, %d val, %d test, %d unlabeled patients",
        name,
        len(fold["train"]),
        len(fold["val"]),
        len(split["test"]),
        len(split["unlabeled"]),
    )
    return split


def subject_role(split: dict[str, Any], subject: str, fold: int = 0) -> str:
    """``train``, ``val``, ``test`` or ``unlabeled`` for a subject."""
    if subject in split["test"]:
        return "test"
    for role in ("train", "val"):
        if subject in split["folds"][fold][role]:
            return role
    return "unlabeled"
