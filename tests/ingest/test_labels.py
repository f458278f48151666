"""Ingest of segmentation labels: label series, mask files, instance masks merged per case."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image

from medcnn.config import validate_config
from medcnn.ingest.manifest import read_manifest, read_quarantine
from medcnn.ingest.pipeline import run_ingest
from medcnn.io.deid import keyed_uid
from tests.io.synthetic import (
    ACCESSION,
    BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    slice_ipps,
    write_series,
)


def _config(results: Path, inputs: list, **ingest) -> dict:
    ingest.setdefault("show_paths", True)  # these tests name the files they expect
    return validate_config(
        {
            "results": str(results),
            "inputs": inputs,
            "deid": {"secret": "test-secret"},
            "ingest": ingest,
        }
    )


def _manifest(results: Path):
    return read_manifest(results / "ingest" / "manifest.tsv")


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_label_series_becomes_an_integer_mask_on_the_image_grid(tmp_path):
    rng = np.random.default_rng(0)
    iop = (0.96592583, 0.25881905, 0.0, -0.25881905, 0.96592583, 0.0)  # 15 degrees in plane
    ipps = slice_ipps(5, spacing=3.0, iop=iop)
    image = rng.integers(-100, 200, (5, 6, 7)).astype(np.int16)
    labels = np.zeros((5, 6, 7), dtype=np.int16)
    labels[1:3, 2:4, 3:6] = 1
    labels[4, 0, 0] = 2
    study = pydicom.uid.generate_uid()
    frame = pydicom.uid.generate_uid()
    scans = tmp_path / "scans"
    image_files = write_series(
        scans / "a",
        image,
        ipps,
        iop=iop,
        study_uid=study,
        instance_order=[5, 4, 3, 2, 1],
        FrameOfReferenceUID=frame,
        SeriesDescription="T1 axial",
    )
    write_series(
        scans / "b",
        labels,
        ipps,
        iop=iop,
        study_uid=study,
        name="SEG",
        FrameOfReferenceUID=frame,
        SeriesDescription="Tumour Segmentation",
    )
    results = tmp_path / "results"
    n, quarantined = run_ingest(_config(results, [str(scans)]))

    assert (n, quarantined) == (2, 0)
    manifest = _manifest(results).set_index("role")
    assert manifest.loc["image", "description"] == "T1 axial"
    assert manifest.loc["mask", "description"] == "Tumour Segmentation"
    img = nib.load(results / manifest.loc["image", "path"])
    mask = nib.load(results / manifest.loc["mask", "path"])
    assert mask.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(mask.affine, img.affine)
    # NIfTI (i, j, k) = (column, row, slice): the DICOM volume transposed.
    np.testing.assert_array_equal(np.asarray(mask.dataobj), labels.transpose(2, 1, 0))
    sidecar = json.loads((results / manifest.loc["image", "sidecar"]).read_text())
    # deid.uids: replace - keyed UIDs, the same for the same key (and only for it).
    assert sidecar["FrameOfReferenceUID"] == keyed_uid(frame, b"test-secret") != frame
    assert sidecar["SOPClassUID"] == str(pydicom.dcmread(image_files[0]).SOPClassUID)
    assert sidecar["ImageOrientationPatient"] == list(iop)
    assert sidecar["PixelSpacing"] == [0.5, 0.8]
    assert sidecar["SliceThickness"] == 1.0
    # Slice k's SOP instance: the files were written in k order, numbered backwards.
    expected = [str(pydicom.dcmread(p).SOPInstanceUID) for p in image_files]
    assert sidecar["SliceSOPInstanceUIDs"] == [keyed_uid(u, b"test-secret") for u in expected]
    mask_sidecar = json.loads((results / manifest.loc["mask", "sidecar"]).read_text())
    assert mask_sidecar["Role"] == "mask"
    for text in (PATIENT_ID, PATIENT_NAME, BIRTH_DATE, ACCESSION):
        assert text not in (results / "ingest" / "manifest.tsv").read_text()
        assert text not in json.dumps(mask_sidecar)


def test_label_series_off_the_image_grid_is_quarantined(tmp_path):
    study = pydicom.uid.generate_uid()
    scans = tmp_path / "scans"
    write_series(scans / "a", np.zeros((4, 6, 7), np.int16), slice_ipps(4), study_uid=study)
    write_series(
        scans / "b",
        np.zeros((4, 6, 8), np.int16),
        slice_ipps(4),
        study_uid=study,
        SeriesDescription="lesion mask",
    )
    results = tmp_path / "results"
    assert run_ingest(_config(results, [str(scans)])) == (1, 4)
    reasons = read_quarantine(results / "ingest" / "quarantine.tsv")
    assert all("label series 'lesion mask'" in r for r in reasons["reason"])
    assert all("label shape 8x6x4 matches no image" in r for r in reasons["reason"])
    assert all("7x6x4" in r for r in reasons["reason"])
    # label_series null: the same series is an image.
    assert run_ingest(_config(tmp_path / "r2", [str(scans)], label_series=None)) == (2, 0)


def test_nifti_masks_and_series_group(tmp_path):
    """BraTS layout: case_N/{FLAIR,T1,GT_W}.nii.gz."""
    rng = np.random.default_rng(1)
    affine = np.array([[-1.0, 0, 0, 90], [0, -1.0, 0, 120], [0, 0, 1.0, -70], [0, 0, 0, 1]])
    data = tmp_path / "brats"
    for case in ("case_0", "case_1"):
        (data / case).mkdir(parents=True)
        for name in ("FLAIR", "T1"):
            nib.save(
                nib.Nifti1Image(rng.random((6, 5, 4)).astype(np.float32), affine),
                data / case / f"{name}.nii.gz",
            )
        label = np.zeros((6, 5, 4), np.float32)  # stored as float, as some tools do
        label[2:4, 1:3, 1:3] = 1.0
        shape_of_mask = (6, 5, 4) if case == "case_0" else (6, 5, 3)
        nib.save(
            nib.Nifti1Image(label[..., : shape_of_mask[2]], affine), data / case / "GT_W.nii.gz"
        )
    results = tmp_path / "results"
    inputs = [
        {
            "path": str(data),
            "pattern": r"(?P<subject>case_\d+)/(?P<series>[^/.]+)",
            "modality": "MR",
            "masks": "GT_W",
        }
    ]
    assert run_ingest(_config(results, inputs)) == (5, 1)
    manifest = _manifest(results)
    assert sorted(manifest["description"]) == ["FLAIR", "FLAIR", "GT_W", "T1", "T1"]
    mask = manifest[manifest["role"] == "mask"].iloc[0]
    assert mask["description"] == "GT_W"
    img = nib.load(results / mask["path"])
    assert img.get_data_dtype() == np.uint8
    assert int(np.asarray(img.dataobj).sum()) == 2 * 2 * 2
    np.testing.assert_allclose(img.affine, affine)
    reasons = read_quarantine(results / "ingest" / "quarantine.tsv")
    assert list(reasons["file"]) == ["brats/case_1/GT_W.nii.gz"]
    assert "mask file brats/case_1/GT_W.nii.gz: label shape 6x5x3" in reasons["reason"][0]
    assert "image shapes: 6x5x4" in reasons["reason"][0]
    assert json.loads((results / mask["sidecar"]).read_text())["Warnings"] == []

    # A label 0.5 mm off its image's grid is kept, with a warning.
    shifted = affine.copy()
    shifted[0, 3] += 0.5
    label = np.asarray(nib.load(data / "case_0" / "GT_W.nii.gz").dataobj)
    nib.save(nib.Nifti1Image(label, shifted), data / "case_0" / "GT_W.nii.gz")
    run_ingest(_config(results, inputs))
    warnings = json.loads((results / mask["sidecar"]).read_text())["Warnings"]
    assert warnings == [
        "label grid is 0.5 mm away from the image of the same shape (affines differ; the"
        " label keeps its own)"
    ]


def test_instance_pngs_merge_into_one_label_map(tmp_path):
    """Data Science Bowl layout: <case>/images/<case>.png + <case>/masks/*.png."""
    data = tmp_path / "dsb"
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[..., :3] = 40
    _png(data / "caseZQ1" / "images" / "caseZQ1.png", rgba)
    first = np.zeros((8, 10), np.uint8)
    first[1:4, 1:4] = 255
    second = np.zeros((8, 10), np.uint8)
    second[3:6, 3:7] = 255  # overlaps the first at (3, 3)
    _png(data / "caseZQ1" / "masks" / "b.png", second)
    _png(data / "caseZQ1" / "masks" / "a.png", first)
    _png(data / "caseZQ1" / "masks" / "empty.png", np.zeros((8, 10), np.uint8))
    _png(data / "caseZQ1" / "masks" / "wrong.png", np.zeros((9, 10), np.uint8))
    results = tmp_path / "results"
    inputs = [
        {
            "path": str(data),
            "pattern": "(?P<subject>[^/]+)/",
            "modality": "SM",
            "instances": "/masks/",
        }
    ]
    assert run_ingest(_config(results, inputs)) == (2, 1)
    manifest = _manifest(results).set_index("role")
    assert manifest.loc["instances", "shape"] == manifest.loc["image", "shape"] == "10x8x1"
    image = nib.load(results / manifest.loc["image", "path"])
    inst = nib.load(results / manifest.loc["instances", "path"])
    np.testing.assert_array_equal(inst.affine, image.affine)
    values = np.asarray(inst.dataobj)[:, :, 0].T  # back to (row, column)
    expected = np.zeros((8, 10), np.uint8)
    expected[first > 0] = 1
    expected[second > 0] = 2  # sorted path order: a.png is 1, b.png is 2 and wins (3, 3)
    np.testing.assert_array_equal(values, expected)
    sidecar = json.loads((results / manifest.loc["instances", "sidecar"]).read_text())
    assert sidecar["NumberOfInstances"] == 2
    assert any("1 pixels belong to more than one instance" in w for w in sidecar["Warnings"])
    assert "1 instance mask file(s) empty: skipped" in sidecar["Warnings"]
    quarantine = read_quarantine(results / "ingest" / "quarantine.tsv")
    assert list(quarantine["file"]) == ["dsb/caseZQ1/masks/wrong.png"]
    assert "instance mask file dsb/caseZQ1/masks/wrong.png" in quarantine["reason"][0]
    # No file name is recorded anywhere.
    for path in (results / "ingest").rglob("*"):
        if path.suffix in (".json", ".tsv") and path.name not in ("quarantine.tsv", "files.tsv"):
            assert "a.png" not in path.read_text() and "caseZQ1" not in path.read_text()

    # Incremental: a second run rewrites nothing.
    stamps = {p: p.stat().st_mtime_ns for p in (results / "ingest").rglob("*.nii.gz")}
    run_ingest(_config(results, inputs))
    assert stamps == {p: p.stat().st_mtime_ns for p in (results / "ingest").rglob("*.nii.gz")}


def test_label_series_with_a_missing_slice_is_resampled_to_the_nearest_slice(tmp_path):
    ipps = [p for k, p in enumerate(slice_ipps(6, spacing=2.0)) if k != 3]
    labels = np.zeros((5, 4, 4), np.int16)
    labels[2] = 1  # slice at 4 mm
    labels[3] = 3  # slice at 8 mm; the missing 6 mm slice lies half way
    study = pydicom.uid.generate_uid()
    scans = tmp_path / "scans"
    write_series(scans / "a", np.ones((5, 4, 4), np.int16), ipps, study_uid=study)
    write_series(scans / "b", labels, ipps, study_uid=study, SeriesDescription="ROI")
    results = tmp_path / "results"
    assert run_ingest(_config(results, [str(scans)])) == (2, 0)
    manifest = _manifest(results).set_index("role")
    assert manifest.loc["mask", "shape"] == manifest.loc["image", "shape"] == "4x4x6"
    values = np.asarray(nib.load(results / manifest.loc["mask", "path"]).dataobj)
    assert [int(values[..., k].max()) for k in range(6)] == [0, 0, 1, 3, 3, 0]
    sidecar = json.loads((results / manifest.loc["mask", "sidecar"]).read_text())
    assert "nearest-slice interpolation" in sidecar["Warnings"][0]
    assert "SliceSOPInstanceUIDs" not in sidecar  # resampled slices have no source file
