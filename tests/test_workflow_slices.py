"""The real ``snakemake`` with a 2D-on-volume task (``segmentation.slices``): the CT lesions
of the segmentation workflow's cohort by a 2D network on axial slices, with the 3D task's
outputs - masks on each image's ingest grid, DICOM SEG, held-out scores, saliency, reports."""

from __future__ import annotations

import json

import numpy as np
import pydicom

from tests.test_workflow_segmentation import predicted_masks

TASK = "lesion_slices"


def test_a_slice_task_plans_a_2d_network_and_writes_the_3d_outputs(seg_run):
    work, cases, _ = seg_run
    results = work / "results"
    plans = json.loads((results / "preprocess" / TASK / "plans.json").read_text())
    assert plans["dims"] == 3 and plans["slices"]["axis"] == "axial"
    assert plans["slices"]["context"] == 1 and len(plans["patch_size"]) == 2
    bundle = json.loads((results / "models" / TASK / "fold0" / "bundle.json").read_text())
    assert bundle["network"]["dims"] == 2 and bundle["network"]["in_channels"] == 3
    predictions, masks = predicted_masks(results, TASK)
    assert len(predictions) == len(cases)
    seg_written = 0
    for _, image, mask, source in masks:
        assert mask.shape[:3] == source.shape[:3]
        np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
        assert 0.0 <= image["metrics"]["lesion"]["dice"] <= 1.0
        if (np.asarray(mask.dataobj) == 1).any():
            assert pydicom.dcmread(results / image["dicom_seg"]).Modality == "SEG"
            seg_written += 1
    for prediction in predictions:
        subject = prediction["subject"]
        assert (results / "saliency" / TASK / subject / "saliency.json").is_file()
        html = (results / "reports" / f"{subject}.html").read_text()
        assert TASK in html
    assert seg_written >= 1
    evaluation = json.loads((results / "models" / TASK / "evaluation.json").read_text())
    assert "lesion_dice" in evaluation["test"]
