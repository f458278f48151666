"""Tests of the synthetic DICOM demo cohort (medcnn.demo)."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian

from medcnn.demo.cxr import (
    CR_IMAGE_STORAGE,
    DX_IMAGE_STORAGE_PRESENTATION,
    MANUFACTURER,
    DemoImage,
    write_demo_cohort,
)

SUFFIX = "ZQX7"


def brightness(ds: pydicom.Dataset) -> np.ndarray:
    """Displayed brightness in [0, 1] (1 = white), shape (Rows, Columns).

    Modality LUT (rescale), then the linear window, then MONOCHROME1 inversion.
    """
    v = ds.pixel_array.astype(np.float64)
    v = v * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
    wc, ww = float(ds.WindowCenter), float(ds.WindowWidth)
    b = (v - (wc - ww / 2)) / ww
    return 1.0 - b if ds.PhotometricInterpretation == "MONOCHROME1" else b


def relative_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / "dicom").rglob("*") if p.is_file())


def read_labels(out_dir: Path) -> list[dict[str, str]]:
    with open(out_dir / "labels.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, list[DemoImage]]:
    out = tmp_path_factory.mktemp("small")
    return out, write_demo_cohort(out, n_patients=6, seed=3, image_size=64,
                                  identifier_suffix=SUFFIX)  # fmt: skip


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> tuple[Path, list[DemoImage]]:
    out = tmp_path_factory.mktemp("medium")
    return out, write_demo_cohort(out, n_patients=24, seed=11, image_size=64)


def test_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_patients must be at least 4"):
        write_demo_cohort(tmp_path / "a", n_patients=3)
    with pytest.raises(ValueError, match="identifier_suffix"):
        write_demo_cohort(tmp_path / "b", n_patients=4, identifier_suffix="TOO_LONG")
    with pytest.raises(ValueError, match="identifier_suffix"):
        write_demo_cohort(tmp_path / "c", n_patients=4, identifier_suffix="A^B")
    with pytest.raises(ValueError, match="image_size"):
        write_demo_cohort(tmp_path / "d", n_patients=4, image_size=16)


def test_refuses_non_empty_output(tmp_path: Path) -> None:
    write_demo_cohort(tmp_path, n_patients=4, image_size=32)
    with pytest.raises(FileExistsError):
        write_demo_cohort(tmp_path, n_patients=4, image_size=32)


def test_every_image_reads_back_with_promised_tags(small) -> None:
    out, images = small
    assert len({i.patient_id for i in images}) == 6
    assert len(images) >= 7  # at least one two-study patient
    expected_spacing = 0.14 * 2048 / 64
    for img in images:
        assert img.path.is_file() and out / "dicom" in img.path.parents
        ds = pydicom.dcmread(img.path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.Modality in ("DX", "CR") and ds.Modality == img.modality
        sop_class = DX_IMAGE_STORAGE_PRESENTATION if ds.Modality == "DX" else CR_IMAGE_STORAGE
        assert ds.SOPClassUID == sop_class == ds.file_meta.MediaStorageSOPClassUID
        assert ds.SOPInstanceUID == img.sop_uid == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.StudyInstanceUID == img.study_uid
        assert ds.SeriesInstanceUID == img.series_uid
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert uid.is_valid  # <= 64 chars, digits and dots, no leading zeros
        assert re.fullmatch(rf"MRN\d{{8}}{SUFFIX}", ds.PatientID)
        assert ds.PatientID == img.patient_id
        assert str(ds.PatientName) == img.patient_name
        assert ds.PatientName.family_name.endswith(SUFFIX) and ds.PatientName.given_name
        assert ds.PatientBirthDate == img.birth_date
        dt.datetime.strptime(ds.PatientBirthDate, "%Y%m%d")
        assert ds.PatientSex in ("F", "M")
        assert ds.AccessionNumber == img.accession_number
        assert re.fullmatch(rf"(\d{{10}}|ACC\d{{7}}){SUFFIX}", ds.AccessionNumber)
        assert ds.StudyDate == img.study_date
        study_date = dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
        assert study_date > dt.datetime.strptime(ds.PatientBirthDate, "%Y%m%d").date()
        assert re.fullmatch(r"\d{6}", ds.StudyTime)
        assert ds.StudyID and ds.SeriesNumber == 1 and ds.InstanceNumber == 1
        assert ds.Manufacturer == MANUFACTURER
        assert ds.BodyPartExamined == "CHEST"
        assert ds.ViewPosition in ("PA", "AP")
        assert ds.PhotometricInterpretation == img.photometric
        assert ds.SamplesPerPixel == 1
        assert ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
        assert ds.BitsStored in (12, 14, 16) and ds.HighBit == ds.BitsStored - 1
        assert (ds.Rows, ds.Columns) in ((64, 64), (64, 56))
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        assert ("PixelSpacing" in ds) != ("ImagerPixelSpacing" in ds)
        assert float(spacing[0]) == float(spacing[1])
        assert abs(float(spacing[0]) - expected_spacing) < 0.06 * expected_spacing
        if "RescaleSlope" in ds:
            pair = (float(ds.RescaleSlope), float(ds.RescaleIntercept))
            assert pair in ((1.0, 0.0), (2.0, -1024.0))
        assert float(ds.WindowWidth) > 0
        arr = ds.pixel_array
        assert arr.shape == (ds.Rows, ds.Columns) and arr.dtype == np.uint16
        assert int(arr.max()) < 2**ds.BitsStored
        assert int(arr.max()) - int(arr.min()) > 0.5 * 2**ds.BitsStored
        b = brightness(ds)
        assert -1e-3 < b.min() and b.max() < 1 + 1e-3
        assert img.finding in ("pneumonia", "no_finding")
        assert (img.opacity_center_rc is not None) == (img.finding == "pneumonia")


def test_decoded_orientation_is_radiograph_like(medium) -> None:
    # After rescale, window and MONOCHROME1 inversion every image has a dark background,
    # a bright spine in the middle and darker lungs either side of it.
    _, images = medium
    for img in images:
        b = brightness(pydicom.dcmread(img.path))
        rows, cols = b.shape
        corner = b[: rows // 10, : cols // 10].mean()
        spine = b[rows // 3 : rows // 2, cols // 2 - 1 : cols // 2 + 1].mean()
        left_lung = b[rows * 3 // 10 : rows // 2, cols * 3 // 10 : cols * 4 // 10].mean()
        assert corner < 0.15, img
        assert spine > 0.6, img
        if img.finding == "no_finding":
            assert left_lung < spine - 0.2, img


def test_monochrome1_is_stored_inverted(medium) -> None:
    _, images = medium
    mono1 = [i for i in images if i.photometric == "MONOCHROME1"]
    assert mono1
    for img in mono1:
        raw = pydicom.dcmread(img.path).pixel_array.astype(np.float64)
        rows, cols = raw.shape
        spine = raw[rows // 3 : rows // 2, cols // 2 - 1 : cols // 2 + 1].mean()
        background = raw[: rows // 10, : cols // 10].mean()
        assert spine < background  # bone is a LOW stored value


def test_mix_of_encodings_and_studies(medium) -> None:
    _, images = medium
    n = len(images)
    headers = [pydicom.dcmread(i.path, stop_before_pixels=True) for i in images]
    photometric = Counter(h.PhotometricInterpretation for h in headers)
    assert set(photometric) == {"MONOCHROME1", "MONOCHROME2"}
    assert 0.15 <= photometric["MONOCHROME1"] / n <= 0.25
    modality = Counter(h.Modality for h in headers)
    assert modality["CR"] >= n // 3 and modality["DX"] >= n // 3
    bits = Counter(int(h.BitsStored) for h in headers)
    assert bits[12] >= 1 and bits[14] + bits[16] >= 1
    assert sum("RescaleSlope" in h for h in headers) >= 1
    assert sum("RescaleSlope" not in h for h in headers) >= 1
    assert sum("PixelSpacing" in h for h in headers) >= 1
    assert sum("ImagerPixelSpacing" in h for h in headers) >= 1
    assert sum(h.Columns != h.Rows for h in headers) >= 1
    assert sum(h.Columns == h.Rows for h in headers) > n // 2
    assert {h.ViewPosition for h in headers} == {"PA", "AP"}
    positives = sum(i.finding == "pneumonia" for i in images)
    assert 0.4 <= positives / n <= 0.5

    per_patient = Counter(i.patient_id for i in images)
    assert len(per_patient) == 24
    assert set(per_patient.values()) == {1, 2}
    assert sum(v == 2 for v in per_patient.values()) == 8  # a third of the patients
    assert len({i.study_uid for i in images}) == n
    assert len({i.series_uid for i in images}) == n
    assert len({i.sop_uid for i in images}) == n
    assert len({i.accession_number for i in images}) == n
    for pid, count in per_patient.items():
        if count == 2:
            a, b = [i for i in images if i.patient_id == pid]
            assert a.study_date < b.study_date
            assert (a.patient_name, a.birth_date) == (b.patient_name, b.birth_date)


def test_labels_csv_has_one_row_per_study(medium) -> None:
    out, images = medium
    assert (out / "labels.csv").read_text().splitlines()[0] == "accession_number,finding"
    rows = read_labels(out)
    assert len(rows) == len(images)
    assert {r["accession_number"]: r["finding"] for r in rows} == {
        i.accession_number: i.finding for i in images
    }
    assert [r["accession_number"] for r in rows] != [i.accession_number for i in images]


def test_opacity_is_brighter_than_same_region_in_negatives(medium) -> None:
    _, images = medium
    decoded = {i.sop_uid: brightness(pydicom.dcmread(i.path)) for i in images}
    positives = [i for i in images if i.finding == "pneumonia"]
    negatives = [i for i in images if i.finding == "no_finding"]
    assert positives and negatives
    for pos in positives:
        b = decoded[pos.sop_uid]
        rr, cc = np.mgrid[: b.shape[0], : b.shape[1]]
        r0, c0 = pos.opacity_center_rc
        assert 0 <= r0 < b.shape[0] and 0 <= c0 < b.shape[1]
        assert 0.10 * b.shape[1] - 1e-6 <= pos.opacity_radius_px <= 0.16 * b.shape[1] + 1e-6
        disc = (rr - r0) ** 2 + (cc - c0) ** 2 <= (0.5 * pos.opacity_radius_px) ** 2
        same_shape = [decoded[n.sop_uid] for n in negatives if decoded[n.sop_uid].shape == b.shape]
        baseline = np.mean([neg[disc].mean() for neg in same_shape])
        assert b[disc].mean() > baseline + 0.1, pos


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    a = write_demo_cohort(tmp_path / "a", n_patients=6, seed=5, image_size=64)
    b = write_demo_cohort(tmp_path / "b", n_patients=6, seed=5, image_size=64)
    c = write_demo_cohort(tmp_path / "c", n_patients=6, seed=6, image_size=64)
    files_a, files_b = relative_files(tmp_path / "a"), relative_files(tmp_path / "b")
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a/labels.csv").read_bytes() == (tmp_path / "b/labels.csv").read_bytes()
    for x, y in zip(a, b, strict=True):
        assert (x.study_uid, x.series_uid, x.sop_uid) == (y.study_uid, y.series_uid, y.sop_uid)
        assert x.path.relative_to(tmp_path / "a") == y.path.relative_to(tmp_path / "b")
        assert pydicom.dcmread(x.path).PixelData == pydicom.dcmread(y.path).PixelData

    assert {x.sop_uid for x in a}.isdisjoint({z.sop_uid for z in c})
    assert {x.patient_id for x in a} != {z.patient_id for z in c}
    assert pydicom.dcmread(a[0].path).PixelData != pydicom.dcmread(c[0].path).PixelData


def test_file_and_folder_names_carry_no_identifiers(small) -> None:
    out, images = small
    identifiers = {SUFFIX.lower()}
    for img in images:
        family, given = img.patient_name.split("^")
        identifiers |= {
            img.patient_id.lower(),
            img.patient_id.removesuffix(SUFFIX).lower(),
            img.accession_number.lower(),
            img.accession_number.removesuffix(SUFFIX).lower(),
            family.lower(),
            family.removesuffix(SUFFIX).lower(),
            given.lower(),
            img.birth_date,
        }
    parts = {part.lower() for rel in relative_files(out) for part in rel.parts}
    for part in parts:
        for ident in identifiers:
            assert ident not in part, (ident, part)
    # Messy layout: several folders, depths between 1 and 3 below dicom/, mixed names.
    depths = {len(rel.parts) - 2 for rel in relative_files(out)}
    assert depths <= {1, 2, 3}
    assert len({img.path.parent for img in images}) >= 2


def test_messy_names_at_default_size(medium) -> None:
    out, images = medium
    names = [i.path.name for i in images]
    assert any(n.endswith(".dcm") for n in names)
    assert any(n.endswith(".DCM") for n in names)
    assert any("." not in n for n in names)
    assert any(n.startswith("IM") for n in names)
    assert len({len(rel.parts) for rel in relative_files(out)}) >= 2


def test_broken_files_are_written_and_fail_to_decode(small) -> None:
    out, images = small
    valid = {i.path for i in images}
    extra = [p for p in (out / "dicom").rglob("*") if p.is_file() and p not in valid]
    assert len(extra) == 3
    notes = [p for p in extra if p.name == "notes.dcm"]
    assert len(notes) == 1
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(notes[0])

    outcomes = []
    for path in extra:
        if path.name == "notes.dcm":
            continue
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            outcomes.append("unreadable")
            continue
        assert ds.PatientID.endswith(SUFFIX)
        assert ds.AccessionNumber not in {r["accession_number"] for r in read_labels(out)}
        if "PixelData" not in ds:
            outcomes.append("no_pixels")
            continue
        with pytest.raises(Exception):  # noqa: B017 - any decoding error will do
            ds.pixel_array  # noqa: B018
        outcomes.append("truncated")
    assert sorted(outcomes) in (["no_pixels", "truncated"], ["no_pixels", "unreadable"])


def test_no_broken_files_when_disabled(tmp_path: Path) -> None:
    images = write_demo_cohort(tmp_path, n_patients=4, image_size=32, broken_files=False)
    assert {tmp_path / rel for rel in relative_files(tmp_path)} == {i.path for i in images}
    for img in images:
        assert pydicom.dcmread(img.path).pixel_array.shape[0] == 32
