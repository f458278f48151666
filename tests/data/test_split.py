from __future__ import annotations

import pandas as pd
import pytest

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
    assert labels["sub-000"] == 1 and labels["sub-001"] == 0
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
    assert sum(labels[s] for s in split["test"]) == 2
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
