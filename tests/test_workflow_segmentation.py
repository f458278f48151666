"""The real ``snakemake`` on tiny segmentation cohorts (CT lesions in 3D, nuclei in 2D).

Each task trains for a few steps; what is checked is the plumbing a user relies on: masks in
each image's own world space, DICOM SEG that references the source slices, the per-nucleus
table, held-out scores, reports with overlays and the CSV, and no identifier anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from tests.conftest import run_snakemake


def _predictions(results: Path, task: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "predict" / task).glob("*.json"))]


def predicted_masks(results: Path, task: str):
    """The predictions of ``task`` that have images, and per image (prediction, image entry,
    mask NIfTI, the ingest NIfTI it was predicted from)."""
    manifest = pd.read_csv(results / "ingest" / "manifest.tsv", sep="\t", dtype=str)
    predictions = [p for p in _predictions(results, task) if p["images"]]
    masks = []
    for prediction in predictions:
        for image in prediction["images"]:
            row = manifest[
                (manifest["subject"] == prediction["subject"])
                & (manifest["series"] == image["series"])
            ].iloc[0]
            masks.append(
                (
                    prediction,
                    image,
                    nib.load(results / image["mask"]),
                    nib.load(results / row["path"]),
                )
            )
    return predictions, masks


def test_masks_are_on_the_ingest_grid_of_their_image(seg_run):
    work, cases, tiles = seg_run
    results = work / "results"
    for task, n in (("lesion", len(cases)), ("nuclei", len(tiles))):
        predictions, masks = predicted_masks(results, task)
        assert len(predictions) == n
        for _, _, mask, source in masks:
            assert mask.shape[:3] == source.shape[:3]
            np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
            assert np.issubdtype(mask.get_data_dtype(), np.integer)


def test_lesion_outputs_volumes_dicom_seg_and_scores(seg_run):
    work, _, _ = seg_run
    results = work / "results"
    split = json.loads((results / "splits" / "lesion.json").read_text())
    for prediction in _predictions(results, "lesion"):
        for image in prediction["images"]:
            mask = nib.load(results / image["mask"])
            voxel_ml = float(np.prod(mask.header.get_zooms()[:3])) / 1000.0
            voxels = int((np.asarray(mask.dataobj) == 1).sum())
            assert image["volume_ml"]["lesion"] == pytest.approx(voxels * voxel_ml, rel=1e-6)
            assert image["metrics"] is not None  # every demo patient has a mask series
            assert 0.0 <= image["metrics"]["lesion"]["dice"] <= 1.0
            if voxels:
                seg = pydicom.dcmread(results / image["dicom_seg"])
                assert seg.Modality == "SEG"
                assert seg.PatientID == prediction["subject"]
                sidecar = json.loads(
                    (results / image["mask"].replace("predict/lesion", "ingest"))
                    .parent.joinpath(f"{image['series']}.json")
                    .read_text()
                )
                referenced = {
                    f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                    for f in seg.PerFrameFunctionalGroupsSequence
                }
                assert referenced <= set(sidecar["SliceSOPInstanceUIDs"])
    evaluation = json.loads((results / "models" / "lesion" / "evaluation.json").read_text())
    assert evaluation["test"]["patients"] == len(split["test"])
    assert set(evaluation["test"]) >= {"lesion_dice", "lesion_hd95_mm", "lesions", "volume_ml"}
    assert (results / "models" / "lesion" / "evaluation.png").stat().st_size > 1000


def test_nuclei_outputs_instances_table_and_scores(seg_run):
    work, _, tiles = seg_run
    results = work / "results"
    reference = 0
    for prediction in _predictions(results, "nuclei"):
        for image in prediction["images"]:
            table = pd.read_csv(results / image["csv"])
            mask = np.asarray(nib.load(results / image["mask"]).dataobj)[..., 0]
            ids = np.unique(mask[mask > 0])
            assert image["n_instances"] == len(ids) == len(table)
            assert set(table.columns) >= {"label", "area_px", "perimeter_px", "eccentricity"}
            if len(ids):
                # the table's areas are the masks' pixel counts, nucleus by nucleus
                counts = {int(i): int((mask == i).sum()) for i in ids}
                assert dict(zip(table["label"], table["area_px"], strict=True)) == counts
            assert set(image["metrics"]) >= {"dice", "aji", "pq", "sq", "dq", "f1"}
            reference += image["reference_instances"]
    # every instance PNG of every tile reached its tile's reference label map
    assert reference == sum(t.n_nuclei for t in tiles)
    evaluation = json.loads((results / "models" / "nuclei" / "evaluation.json").read_text())
    assert {"aji", "pq", "f1"} <= set(evaluation["test"])


def test_the_touching_boundary_class_learns(seg_run):
    """The fourth class (touching boundary) of the default instance task gets a validation
    Dice above zero: with unweighted cross-entropy it stayed at 0 and the model acted as a
    three-class one (issue 20)."""
    work, _, _ = seg_run
    history = pd.read_csv(work / "results" / "models" / "nuclei" / "fold0" / "history.csv")
    assert "val_dice_touching" in history.columns
    assert history["val_dice_touching"].max() > 0.0
    plans = json.loads(
        (work / "results" / "models" / "nuclei" / "fold0" / "plans.json").read_text()
    )
    assert plans["classes"] == ["background", "interior", "boundary", "touching"]
    assert plans["normalisation"]["scheme"] == "nuclei" and plans["rescale"]["nucleus_diameter"]


def test_nuclei_predictions_carry_type_size_and_quality_flags(seg_run):
    work, _, _ = seg_run
    for prediction in _predictions(work / "results", "nuclei"):
        for image in prediction["images"]:
            assert image["image_type"] == "fluorescence"
            assert image["quality_flags"] == []  # the demo tiles are all alike
            assert image["diameter_source"] in ("estimate", "first_pass")
            assert 2.0 < image["nucleus_diameter_px"] < 20.0


def test_reports_show_masks_tables_and_uncertainty(seg_run):
    work, _, _ = seg_run
    results = work / "results"
    ct = [p for p in _predictions(results, "lesion") if p["images"]][0]
    html = (results / "reports" / f"{ct['subject']}.html").read_text()
    assert 'class="mask"' in html and "lesion volume (mL)" in html
    assert 'class="uncertainty"' in html
    nuclei = [p for p in _predictions(results, "nuclei") if p["images"]][0]
    html = (results / "reports" / f"{nuclei['subject']}.html").read_text()
    assert "data:text/csv;base64," in html and 'download="' in html
    assert (results / "reports" / f"{nuclei['subject']}.pdf").read_bytes()[:4] == b"%PDF"
    cohort = (results / "reports" / "cohort.html").read_text()
    assert 'id="seg-evaluation-lesion"' in cohort and 'id="seg-evaluation-nuclei"' in cohort
    table = pd.read_csv(results / "reports" / "cohort.tsv", sep="\t")
    assert {"lesion_measure", "nuclei_measure"} <= set(table.columns)


def test_no_identifier_in_any_output(seg_run):
    work, cases, _ = seg_run
    needles = [c.patient_id.encode() for c in cases] + [b"Lesion^Demo"]
    for folder in (work / "results", work / "logs"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".tsv", ".html", ".log", ".csv", ".dcm"):
                blob = path.read_bytes()
                assert not any(n in blob for n in needles), path


@pytest.mark.slow  # one more Snakemake run; the radiograph bundle's is in the default suite
def test_predict_only_with_the_lesion_bundle_gives_the_same_masks(seg_run, tmp_path):
    """A segmentation bundle predicts a fresh folder alone: same masks as the training run."""
    work, _, _ = seg_run
    results = work / "results"
    (tmp_path / "scans").symlink_to(work / "scans")
    configfile = tmp_path / "predict.yaml"
    configfile.write_text(
        yaml.safe_dump(
            {
                "inputs": ["scans/ct"],
                "deid": {"secret": "workflow-test"},
                "bundles": {"lesion": {"path": str(results / "models" / "lesion")}},
            }
        )
    )
    result = run_snakemake(tmp_path, configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (tmp_path / "results" / "models").exists(), "predict-only must not train"
    for trained in [p for p in _predictions(results, "lesion") if p["images"]]:
        again = json.loads(
            (tmp_path / "results" / "predict" / "lesion" / f"{trained['subject']}.json").read_text()
        )
        assert again["role"] == "new"
        for a, b in zip(again["images"], trained["images"], strict=True):
            first = np.asarray(nib.load(results / b["mask"]).dataobj)
            second = np.asarray(nib.load(tmp_path / "results" / a["mask"]).dataobj)
            np.testing.assert_array_equal(first, second)
            assert a["volume_ml"] == pytest.approx(b["volume_ml"])
        assert (tmp_path / "results" / "reports" / f"{trained['subject']}.html").exists()
