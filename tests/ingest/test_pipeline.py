from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

from medcnn.ingest.manifest import MANIFEST_COLUMNS, read_manifest, read_quarantine
from medcnn.ingest.pipeline import run_ingest
from medcnn.io.deid import keyed_uid, pseudonym
from tests.conftest import tiny_config


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Hash and mtime of every file below a folder."""
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_ingest_demo_cohort(demo_cohort, tmp_path):
    demo, images = demo_cohort
    before = snapshot(demo)
    config = tiny_config(demo, tmp_path / "results")
    n_images, n_quarantined = run_ingest(config)

    assert snapshot(demo) == before, "ingest modified its input folder"
    assert n_images == len(images)
    assert n_quarantined == 3
    manifest = read_manifest(tmp_path / "results" / "ingest" / "manifest.tsv")
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert len(manifest) == len(images)

    # Subjects are the keyed pseudonyms of the PatientIDs; labels joined by AccessionNumber.
    secret = b"test-secret"
    expected = {pseudonym(i.patient_id, secret, "sub-") for i in images}
    assert set(manifest["subject"]) == expected
    by_series = {pseudonym(i.study_uid, secret, "ses-", 8): i.finding for i in images}
    for _, row in manifest.iterrows():
        assert row["finding"] == by_series[row["study"]]
        assert row["dims"] == "2"

    # Voxels: the NIfTI holds the DICOM's pixels (MONOCHROME1 inverted), in NIfTI axis order.
    first = images[0]
    row = manifest[manifest["study"] == pseudonym(first.study_uid, secret, "ses-", 8)].iloc[0]
    nii = nib.load(tmp_path / "results" / row["path"])
    ds = pydicom.dcmread(first.path)
    assert nii.shape == (ds.Columns, ds.Rows, 1)
    assert nii.header.get_qform(coded=True)[1] == 1 and nii.header.get_sform(coded=True)[1] == 1
    sidecar = json.loads((tmp_path / "results" / row["sidecar"]).read_text())
    assert sidecar["SOPInstanceUID"] == keyed_uid(first.sop_uid, secret)  # deid.uids: replace
    assert sidecar["PhotometricInterpretation"] == first.photometric
    values = np.asarray(nii.dataobj)[:, :, 0].T
    stored = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )
    if first.photometric == "MONOCHROME2":
        np.testing.assert_allclose(values, stored)
    else:
        np.testing.assert_allclose(values + stored, values[0, 0] + stored[0, 0])

    quarantine = read_quarantine(tmp_path / "results" / "ingest" / "quarantine.tsv")
    reasons = " | ".join(quarantine["reason"])
    assert "no pixel data" in reasons
    assert "not a DICOM file" in reasons or "not a readable DICOM" in reasons
    # A truncated file is refused from its header: declared size against the bytes present.
    assert "truncated pixel data" in reasons
    # notes.dcm is not a plain scan-file name: shown as a keyed pseudonym.
    assert any(re.fullmatch(r".*/f-[0-9a-f]{10}\.dcm", f) for f in quarantine["file"])


def test_rerun_leaves_unchanged_outputs_alone(demo_cohort, tmp_path):
    demo, _ = demo_cohort
    config = tiny_config(demo, tmp_path / "results")
    run_ingest(config)
    images = sorted((tmp_path / "results" / "ingest").rglob("*.nii.gz"))
    mtimes = [p.stat().st_mtime_ns for p in images]
    os.utime(images[0], ns=(1, 1))  # a rewrite would reset this
    run_ingest(config)
    assert images[0].stat().st_mtime_ns == 1
    assert [p.stat().st_mtime_ns for p in images[1:]] == mtimes[1:]


def test_identifiers_can_be_kept_when_configured(demo_cohort, tmp_path):
    demo, images = demo_cohort
    config = tiny_config(demo, tmp_path / "results")
    config["deid"]["keep_identifiers"] = True
    run_ingest(config)
    sidecars = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("sub-*/*.json")]
    assert {s["PatientID"] for s in sidecars} == {i.patient_id for i in images}
