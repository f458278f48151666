"""The segmentation demo cohorts: deterministic, and ingested with the right roles and grids."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcnn.config import validate_config
from medcnn.demo.segmentation import (
    MASK_DESCRIPTION,
    touching_pairs,
    write_ct_cohort,
    write_nuclei_cohort,
)
from medcnn.ingest.manifest import read_manifest, read_quarantine
from medcnn.ingest.pipeline import run_ingest


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cases = write_ct_cohort(out / "ct", n_patients=4, size=32, n_slices=10, seed=2)
    tiles = write_nuclei_cohort(out / "nuclei", n_tiles=3, size=64, seed=2)
    results = out / "results"
    config = validate_config(
        {
            "results": str(results),
            "inputs": [
                str(out / "ct"),
                {
                    "path": str(out / "nuclei"),
                    "pattern": "(?P<subject>[^/]+)/",
                    "modality": "SM",
                    "instances": "/masks/",
                },
            ],
            "deid": {"secret": "test-secret"},
        }
    )
    counts = run_ingest(config)
    return out, cases, tiles, results, counts


def test_same_seed_same_bytes(cohorts, tmp_path):
    out, *_ = cohorts
    write_ct_cohort(tmp_path / "ct", n_patients=4, size=32, n_slices=10, seed=2)
    write_nuclei_cohort(tmp_path / "nuclei", n_tiles=3, size=64, seed=2)
    assert _digest(tmp_path / "ct") == _digest(out / "ct")
    assert _digest(tmp_path / "nuclei") == _digest(out / "nuclei")


def test_ct_files_are_real_ct_dicom(cohorts):
    out, cases, *_ = cohorts
    assert [c.n_lesions >= 1 and c.lesion_voxels > 0 for c in cases] == [True] * 4
    assert cases[1].rotation_deg > 10 and cases[2].reversed_numbers
    image = pydicom.dcmread(next((cases[0].folder / "ct").iterdir()))
    mask = pydicom.dcmread(next((cases[0].folder / "mask").iterdir()))
    assert image.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert (image.RescaleIntercept, image.RescaleSlope) == (-1024, 1)
    assert mask.SeriesDescription == MASK_DESCRIPTION
    assert mask.FrameOfReferenceUID == image.FrameOfReferenceUID
    assert mask.StudyInstanceUID == image.StudyInstanceUID
    assert mask.SeriesInstanceUID != image.SeriesInstanceUID
    assert set(np.unique(mask.pixel_array)) <= {0, 1}
    hu = image.pixel_array.astype(float) - 1024
    assert hu.min() < -900 and hu.max() > 200  # air and bone


def test_ct_cohort_ingests_as_image_and_mask_pairs(cohorts):
    _, cases, _, results, (n, quarantined) = cohorts
    assert quarantined == 0
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    ct = manifest[manifest["modality"] == "CT"]
    assert sorted(ct.groupby("subject")["role"].apply(lambda r: "+".join(sorted(r)))) == [
        "image+mask"
    ] * len(cases)
    assert set(ct["shape"]) == {"32x32x10"} and set(ct["spacing"]) == {"1.5x1.5x3"}
    lesion_voxels = []
    for _, pair in ct.groupby("subject"):
        pair = pair.set_index("role")
        image = nib.load(results / pair.loc["image", "path"])
        mask = nib.load(results / pair.loc["mask", "path"])
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
        assert mask.get_data_dtype() == np.uint8
        values = np.asarray(mask.dataobj)
        lesion_voxels.append(int(values.sum()))
        hu = np.asarray(image.dataobj, dtype=float)
        # Lesions differ from the soft tissue around them by 40-80 HU (either sign).
        around = (hu > -200) & (hu < 200) & (values == 0)
        assert abs(np.median(hu[values == 1]) - np.median(hu[around])) > 20
    assert sorted(lesion_voxels) == sorted(c.lesion_voxels for c in cases)
    # No identifier of the DICOM headers reaches an ingest output (NIfTI headers included).
    first = pydicom.dcmread(next((cases[0].folder / "ct").iterdir()))
    secrets = [c.patient_id for c in cases] + [
        str(first.PatientName),
        first.PatientBirthDate,
        first.AccessionNumber,
    ]
    for path in (results / "ingest").rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            if path.name.endswith(".nii.gz"):
                raw = gzip.decompress(raw)[:2048]  # header and extensions
            assert not any(text.encode() in raw for text in secrets), path
    assert n == 2 * len(cases) + 2 * 3


def test_nuclei_cohort_ingests_with_touching_instances(cohorts):
    out, _, tiles, results, _ = cohorts
    for tile in tiles:
        masks = sorted((out / "nuclei" / tile.name / "masks").glob("*.png"))
        assert len(masks) == tile.n_nuclei >= 5
        assert (out / "nuclei" / tile.name / "images" / f"{tile.name}.png").is_file()
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    sm = manifest[manifest["modality"] == "SM"]
    assert sorted(sm["role"]) == ["image"] * 3 + ["instances"] * 3
    counts, touching = [], 0
    for _, pair in sm.groupby("subject"):
        pair = pair.set_index("role")
        image = nib.load(results / pair.loc["image", "path"])
        inst = nib.load(results / pair.loc["instances", "path"])
        np.testing.assert_array_equal(inst.affine, image.affine)
        labels = np.asarray(inst.dataobj)[:, :, 0]
        ids = np.unique(labels)
        assert list(ids) == list(range(len(ids)))  # 0 then 1..N, none missing
        counts.append(len(ids) - 1)
        touching += len(touching_pairs(labels))
        # Nuclei are brighter than the background.
        grey = np.asarray(image.dataobj)[:, :, 0].astype(float)
        assert grey[labels > 0].mean() > 3 * grey[labels == 0].mean()
    assert sorted(counts) == sorted(t.n_nuclei for t in tiles)
    assert touching >= 5
    assert read_quarantine(results / "ingest" / "quarantine.tsv").empty


def test_touching_pairs_is_eight_connected():
    labels = np.zeros((5, 5), int)
    labels[0, 0], labels[1, 1], labels[3, 3], labels[3, 4] = 1, 2, 3, 4
    assert touching_pairs(labels) == {(1, 2), (3, 4)}


def test_cli_writes_the_cohorts_next_to_each_other(tmp_path):
    from medcnn.cli import main

    assert (
        main(["demo-data", str(tmp_path), "--cohort", "nuclei", "--tiles", "1", "--size", "64"])
        == 0
    )
    args = ["--patients", "1", "--size", "32", "--slices", "8", "--spacing", "1", "1", "2"]
    assert main(["demo-data", str(tmp_path), "--cohort", "ct", *args]) == 0
    assert len(list((tmp_path / "nuclei").glob("*/images/*.png"))) == 1
    files = sorted((tmp_path / "ct").glob("case000/*/*.dcm"))
    assert len(files) == 16
    assert [float(v) for v in pydicom.dcmread(files[0]).PixelSpacing] == [1.0, 1.0]
