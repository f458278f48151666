"""DICOM SEG from a label map on the ingest grid: frames on the right source slices."""

from __future__ import annotations

import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from medcnn.config import validate_config
from medcnn.ingest.manifest import read_manifest
from medcnn.ingest.pipeline import run_ingest
from medcnn.io.deid import keyed_uid
from medcnn.io.seg import write_dicom_seg
from tests.io.synthetic import (
    ACCESSION,
    BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    slice_ipps,
    write_series,
)

# In-plane rotation of 20 degrees and files numbered against the slice direction.
IOP = (0.93969262, 0.34202014, 0.0, -0.34202014, 0.93969262, 0.0)


@pytest.fixture
def ingested(tmp_path):
    rng = np.random.default_rng(4)
    volume = rng.integers(0, 100, (6, 5, 7)).astype(np.int16)  # (slices, rows, columns)
    files = write_series(
        tmp_path / "scans",
        volume,
        slice_ipps(6, spacing=2.5, iop=IOP),
        iop=IOP,
        instance_order=[6, 5, 4, 3, 2, 1],
        FrameOfReferenceUID=pydicom.uid.generate_uid(),
        Modality="MR",
    )
    results = tmp_path / "results"
    config = validate_config(
        {"results": str(results), "inputs": [str(tmp_path / "scans")], "deid": {"secret": "s"}}
    )
    run_ingest(config)
    row = read_manifest(results / "ingest" / "manifest.tsv").iloc[0]
    image = nib.load(results / row["path"])
    sidecar = json.loads((results / row["sidecar"]).read_text())
    # deid.uids: replace - the sidecar (and so the SEG) holds the keyed UIDs of the sources.
    by_sop = {
        keyed_uid(str(pydicom.dcmread(p).SOPInstanceUID), b"s"): pydicom.dcmread(p) for p in files
    }
    return image, sidecar, by_sop


def test_seg_frames_sit_on_their_source_slices(ingested, tmp_path):
    image, sidecar, by_sop = ingested
    labels = np.zeros(image.shape, np.uint8)  # (i, j, k) = (column, row, slice)
    labels[1:4, 2:4, 1] = 1
    labels[5, 0, 4] = 2
    labels[2, 2, 4] = 1
    label_img = nib.Nifti1Image(labels, image.affine)
    out = write_dicom_seg(label_img, sidecar, tmp_path / "seg" / "x.dcm", ["lesion", "edema"])

    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["lesion", "edema"]
    assert ds.SegmentSequence[0].SegmentAlgorithmName == "medcnn"
    assert ds.FrameOfReferenceUID == sidecar["FrameOfReferenceUID"]
    assert ds.StudyInstanceUID == sidecar["StudyInstanceUID"]
    assert ds.PatientID == sidecar["Subject"]
    raw = out.read_bytes()
    for text in (PATIENT_ID, PATIENT_NAME, BIRTH_DATE, ACCESSION):
        assert text.encode() not in raw

    pixels = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    seen = set()
    for frame, item in zip(pixels, ds.PerFrameFunctionalGroupsSequence, strict=True):
        sop = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        segment = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        k = sidecar["SliceSOPInstanceUIDs"].index(sop)
        source = by_sop[sop]
        position = item.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(position, source.ImagePositionPatient, atol=1e-4)
        np.testing.assert_array_equal(frame, (labels[:, :, k].T == segment).astype(np.uint8))
        seen.add((k, segment))
    assert seen == {(1, 1), (4, 1), (4, 2)}  # empty frames left out
    np.testing.assert_allclose(
        ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
        IOP,
        atol=1e-6,
    )
    referenced = {uid for _, _, uid in hd.seg.Segmentation.from_dataset(ds).get_source_image_uids()}
    assert referenced <= set(sidecar["SliceSOPInstanceUIDs"]) and referenced


def test_seg_refuses_labels_it_cannot_place(ingested, tmp_path):
    image, sidecar, _ = ingested
    wrong = nib.Nifti1Image(np.zeros(image.shape[:2] + (3,), np.uint8), image.affine)
    with pytest.raises(ValueError, match="has 3 slices but its source"):
        write_dicom_seg(wrong, sidecar, tmp_path / "a.dcm", ["lesion"])
    labels = nib.Nifti1Image(np.full(image.shape, 2, np.uint8), image.affine)
    with pytest.raises(ValueError, match="label 2 has no segment name"):
        write_dicom_seg(labels, sidecar, tmp_path / "b.dcm", ["lesion"])
    no_refs = {k: v for k, v in sidecar.items() if k != "SliceSOPInstanceUIDs"}
    with pytest.raises(ValueError, match="lacks SliceSOPInstanceUIDs"):
        write_dicom_seg(labels, no_refs, tmp_path / "c.dcm", ["a", "b"])
