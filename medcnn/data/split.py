"""Patient-level splits: every image of a patient lands on the same side.

``results/splits/{task}.json``::

    {"task": ..., "seed": ..., "test": [subjects], "unlabeled": [subjects],
     "folds": [{"train": [subjects], "val": [subjects]}, ...],
     "strata": {stratum: patients}}

A stratified share of the patients is held out for testing; the rest is either split once
into train and validation (``folds: 1``) or cut into k stratified folds, fold i validating on
part i and training on the others (k-fold cross-validation, every non-test patient validates
exactly once). Strata are per patient (:meth:`LabelScheme.stratum`), so stratifying patients
with ``StratifiedKFold`` is what ``StratifiedGroupKFold`` does over images grouped by patient,
without its approximate search.

Splitting images instead of patients leaks: two radiographs of one patient look more alike
than two patients, and the test score then measures recognition of the patient.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from medcnn.data.labels import LabelScheme

log = logging.getLogger(__name__)


def patient_labels(index: pd.DataFrame, scheme: LabelScheme | None = None) -> dict[str, str]:
    """One stratum per labelled patient (binary: ``"1"`` when any of their images is positive).

    Args:
        index: the task's index (columns ``subject``, ``target``).
        scheme: the task's label scheme; None reads ``target`` as binary ``1``/``0``.
    """
    scheme = scheme or LabelScheme("binary", "target", ("1",))
    labelled = index[index["target"] != ""]
    if labelled.empty:
        return {}
    matrix = scheme.decode(labelled["target"].tolist())
    frequency = matrix.sum(axis=0)
    rows = {s: np.flatnonzero(labelled["subject"].to_numpy() == s) for s in labelled["subject"]}
    return {s: scheme.stratum(matrix[i], frequency) for s, i in sorted(rows.items())}


def _mergeable(labels: list[str], minimum: int) -> list[str]:
    """Strata with fewer than ``minimum`` patients pooled (and a pool still too small joins
    the largest stratum), so a stratified splitter can put every stratum on every side."""
    counts = Counter(labels)
    merged = [lab if counts[lab] >= minimum else "(rare)" for lab in labels]
    counts = Counter(merged)
    if 0 < counts.get("(rare)", 0) < minimum and len(counts) > 1:
        largest = max((c, lab) for lab, c in counts.items() if lab != "(rare)")[1]
        merged = [largest if lab == "(rare)" else lab for lab in merged]
    return merged


def _stratified(subjects: list[str], labels: list[str], fraction: float, seed: int):
    n_take = max(1, round(fraction * len(subjects)))
    strata = _mergeable(labels, 2)
    counts = Counter(strata)
    # Stratify only when each class can be on both sides (and each side can hold each class).
    can_stratify = (
        len(counts) > 1
        and min(counts.values()) >= 2
        and min(n_take, len(subjects) - n_take) >= len(counts)
    )
    return train_test_split(
        subjects,
        test_size=n_take,
        random_state=seed,
        stratify=strata if can_stratify else None,
    )


def make_split(
    index: pd.DataFrame,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    folds: int = 1,
    scheme: LabelScheme | None = None,
) -> dict[str, Any]:
    """Split the patients of an index into a test set and ``folds`` train/validation folds.

    Args:
        index: the task's index (columns ``subject``, ``target``).
        test_fraction: share of labelled patients held out for testing.
        val_fraction: share of the rest used for validation when ``folds`` is 1.
        seed: seed of every random choice.
        folds: 1 for a single train/validation split, k >= 2 for k-fold cross-validation.
        scheme: the task's label scheme (None: binary ``1``/``0`` targets).

    Raises:
        ValueError: fewer than 3 labelled patients, or fewer non-test patients than folds.
    """
    labels = patient_labels(index, scheme)
    subjects = sorted(labels)
    if len(subjects) < 3:
        raise ValueError(f"need at least 3 labelled patients to split, found {len(subjects)}")
    rest, test = _stratified(subjects, [labels[s] for s in subjects], test_fraction, seed)
    rest = sorted(rest)
    if folds == 1:
        train, val = _stratified(rest, [labels[s] for s in rest], val_fraction, seed)
        fold_list = [{"train": sorted(train), "val": sorted(val)}]
    else:
        if len(rest) < folds:
            raise ValueError(
                f"{folds} folds need at least {folds} non-test patients, found {len(rest)}"
            )
        strata = _mergeable([labels[s] for s in rest], folds)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        fold_list = [
            {"train": sorted(rest[i] for i in tr), "val": sorted(rest[i] for i in va)}
            for tr, va in splitter.split(np.zeros(len(rest)), strata)
        ]
    unlabeled = sorted(set(index["subject"]) - set(subjects))
    return {
        "seed": seed,
        "test": sorted(test),
        "unlabeled": unlabeled,
        "folds": fold_list,
        "strata": dict(sorted(Counter(labels.values()).items())),
    }


def subject_role(split: dict[str, Any], subject: str, fold: int = 0) -> str:
    """``train``, ``val``, ``test`` or ``unlabeled`` for a subject."""
    if subject in split["test"]:
        return "test"
    for role in ("train", "val"):
        if subject in split["folds"][fold][role]:
            return role
    return "unlabeled"
