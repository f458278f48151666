from __future__ import annotations

import pandas as pd
import pytest

from medcnn.data.labels import LabelScheme
from medcnn.data.split import make_split, patient_labels, subject_role


def index_of(n_patients: int, images_per_patient: int = 2) -> pd.DataFrame:
    rows = []
    for p in range(n_patients):
        for k in range(images_per_patient):
            # Patients 0, 3, 6, ... positive on their last image only.
            target = "1" if (p % 3 == 0 and k == images_per_patient - 1) else "0"
            rows.append({"subject": f"sub-{p:03d}", "series": f"DX-{k}", "target": target})
    rows.append({"subject": "sub-unlabeled", "series": "DX-0", "target": ""})
    return pd.DataFrame(rows)


def test_patient_label_is_any_positive_image():
    labels = patient_labels(index_of(6))
    assert labels["sub-000"] == "1" and labels["sub-001"] == "0"
    assert "sub-unlabeled" not in labels


def test_no_patient_on_two_sides_and_stratified():
    index = index_of(30)
    split = make_split(index, test_fraction=0.2, val_fraction=0.25, seed=1)
    fold = split["folds"][0]
    sides = [set(split["test"]), set(fold["train"]), set(fold["val"])]
    assert sum(len(s) for s in sides) == 30
    assert set.union(*sides) == {f"sub-{p:03d}" for p in range(30)}
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert len(split["test"]) == 6 and len(fold["val"]) == 6
    labels = patient_labels(index)
    # 10 of 30 positive: stratification gives 2 positives among 6 test patients.
    assert sum(labels[s] == "1" for s in split["test"]) == 2
    assert split["unlabeled"] == ["sub-unlabeled"]
    assert subject_role(split, "sub-unlabeled") == "unlabeled"
    assert subject_role(split, split["test"][0]) == "test"


def test_split_is_deterministic_per_seed():
    index = index_of(30)
    assert make_split(index, 0.2, 0.25, seed=1) == make_split(index, 0.2, 0.25, seed=1)
    assert make_split(index, 0.2, 0.25, seed=1) != make_split(index, 0.2, 0.25, seed=2)


def test_too_few_patients_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 labelled patients"):
        make_split(index_of(2), 0.2, 0.2, seed=0)


def test_k_fold_every_patient_validates_once_and_never_twice():
    index = index_of(40)
    split = make_split(index, test_fraction=0.25, val_fraction=0.2, seed=3, folds=5)
    labels = patient_labels(index)
    rest = set(labels) - set(split["test"])
    assert len(split["folds"]) == 5 and len(split["test"]) == 10
    vals = [set(f["val"]) for f in split["folds"]]
    assert set.union(*vals) == rest and sum(len(v) for v in vals) == len(rest) == 30
    positives = sum(labels[s] == "1" for s in rest)
    assert positives == 11  # 14 of 40 positive, 3 of them (of 10) in the test set
    for fold, val in zip(split["folds"], vals, strict=True):
        assert set(fold["train"]) | val == rest and not set(fold["train"]) & val
        assert not set(split["test"]) & (set(fold["train"]) | val)
        # stratified: 11 positives over 5 folds, 2 or 3 in each validation fold of 6
        assert len(val) == 6 and sum(labels[s] == "1" for s in val) in (2, 3)
    assert make_split(index, 0.25, 0.2, seed=3, folds=5) == split
    with pytest.raises(ValueError, match="5 folds need at least 5 non-test patients"):
        make_split(index_of(5), 0.25, 0.2, seed=0, folds=5)


def test_multilabel_strata_spread_a_rare_finding():
    rows = []
    for p in range(24):
        # finding b is rare (4 patients), a common (12), the rest have none
        vector = ["1" if p % 2 == 0 else "0", "1" if p % 6 == 1 else "0"]
        rows.append({"subject": f"sub-{p:03d}", "series": "DX-0", "target": "|".join(vector)})
    scheme = LabelScheme.from_target({"column": "f", "labels": ["a", "b"]})
    split = make_split(pd.DataFrame(rows), 0.25, 0.2, seed=0, folds=3, scheme=scheme)
    assert split["strata"] == {"a": 12, "b": 4, "none": 8}
    labels = patient_labels(pd.DataFrame(rows), scheme)
    test_rest = [s for s in labels if s not in split["test"]]
    rare = [s for s in test_rest if labels[s] == "b"]
    # the rare finding's non-test patients are spread, not lumped in one fold
    assert max(sum(s in f["val"] for s in rare) for f in split["folds"]) <= 1 + len(rare) // 3
