"""Which images a segmentation task takes, and which label map each one gets."""

from __future__ import annotations

import pandas as pd

from medcnn.config import validate_config
from medcnn.planning.segmentation import plan_classes
from medcnn.stages.preprocess.segmentation import seg_cases


def _row(subject, study, series, modality, role, shape, description="", dims=3):
    return {
        "subject": subject,
        "study": study,
        "series": series,
        "modality": modality,
        "dims": str(dims),
        "shape": shape,
        "role": role,
        "description": description,
        "path": f"ingest/{subject}/{series}.nii.gz",
    }


def _task(**segmentation):
    config = validate_config(
        {
            "inputs": ["x"],
            "tasks": {
                "lesion": {
                    "kind": "segmentation",
                    "dims": 3,
                    "modalities": ["MR"],
                    "segmentation": segmentation,
                }
            },
        }
    )
    return config["tasks"]["lesion"]


MANIFEST = pd.DataFrame(
    [
        _row("sub-a", "ses-1", "MR-flair", "MR", "image", "240x240x155", "FLAIR"),
        _row("sub-a", "ses-1", "MR-t1", "MR", "image", "240x240x155", "T1"),
        _row("sub-a", "ses-1", "MR-gt", "MR", "mask", "240x240x155", "GT_W"),
        # a label of another study and one off-grid: neither belongs to ses-2's image
        _row("sub-b", "ses-2", "MR-flair", "MR", "image", "200x200x100", "FLAIR"),
        _row("sub-b", "ses-3", "MR-gt", "MR", "mask", "200x200x100", "GT_W"),
        _row("sub-c", "ses-4", "MR-flair", "MR", "image", "64x64x32", "FLAIR"),
        _row("sub-c", "ses-4", "MR-gt", "MR", "mask", "64x64x30", "GT_W"),
        # other modality, other role, other dimensionality: never taken
        _row("sub-d", "ses-5", "CT-1", "CT", "image", "64x64x32"),
        _row("sub-d", "ses-5", "SM-1", "MR", "instances", "64x64x1", dims=2),
    ]
)


def test_images_pair_with_the_label_of_their_study_on_their_grid():
    cases = seg_cases(MANIFEST, _task())
    pairs = {(c["image"]["subject"], c["image"]["series"]): c["label"] for c in cases}
    assert set(pairs) == {
        ("sub-a", "MR-flair"),
        ("sub-a", "MR-t1"),
        ("sub-b", "MR-flair"),
        ("sub-c", "MR-flair"),
    }
    assert pairs[("sub-a", "MR-flair")]["series"] == "MR-gt"
    assert pairs[("sub-a", "MR-t1")]["series"] == "MR-gt"
    assert pairs[("sub-b", "MR-flair")] is None  # the mask is in another study
    assert pairs[("sub-c", "MR-flair")] is None  # the mask is not on the image's grid


def test_the_series_filter_chooses_images_by_description():
    cases = seg_cases(MANIFEST, _task(series="^FLAIR$"))
    assert {c["image"]["series"] for c in cases} == {"MR-flair"}
    assert len(cases) == 3


def test_the_plans_name_the_classes_of_each_kind():
    def classes(task):
        seg = task["segmentation"]
        return plan_classes(task["kind"], seg["classes"], seg["touching_class"])

    assert classes(_task(classes=["tumour"])) == ["background", "tumour"]
    instance = {**_task(), "kind": "instance_segmentation"}
    assert classes(instance) == ["background", "interior", "boundary", "touching"]
    three = {**instance, "segmentation": {**instance["segmentation"], "touching_class": False}}
    assert classes(three) == ["background", "interior", "boundary"]
