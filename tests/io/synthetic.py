"""Tiny DICOM series written at test time, with known geometry (fixed seeds, no downloads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

#: Identifiers written into every synthetic file; no output may contain them.
PATIENT_ID = "MRN7731ZQXJ"
PATIENT_NAME = "DOE^JANE^ZQXJ"
ACCESSION = "ACC5512ZQXJ"
BIRTH_DATE = "19600314"
STUDY_DATE = "20190607"


def base_dataset(sop_class: str = MR_STORAGE, modality: str = "MR", **tags) -> Dataset:
    """A dataset with file meta, patient/study identifiers and the given tags."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = PATIENT_ID
    ds.PatientName = PATIENT_NAME
    ds.PatientBirthDate = BIRTH_DATE
    ds.AccessionNumber = ACCESSION
    ds.InstitutionName = "ST ZQXJ HOSPITAL"
    ds.StudyDate = STUDY_DATE
    ds.StudyInstanceUID = tags.pop("StudyInstanceUID", None) or generate_uid()
    ds.SeriesInstanceUID = tags.pop("SeriesInstanceUID", None) or generate_uid()
    ds.Manufacturer = "medcnn-test"
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def slice_ipps(
    n: int,
    spacing: float = 2.0,
    origin: Sequence[float] = (-10.0, -20.0, 30.0),
    iop: Sequence[float] = AXIAL,
    shift_per_slice: Sequence[float] = (0.0, 0.0, 0.0),
) -> list[np.ndarray]:
    """IPPs of ``n`` parallel slices ``spacing`` mm apart along the normal (LPS)."""
    normal = np.cross(iop[:3], iop[3:6])
    return [
        np.asarray(origin, float) + k * spacing * normal + k * np.asarray(shift_per_slice, float)
        for k in range(n)
    ]


def write_series(
    folder: Path,
    volume: np.ndarray,
    ipps: Sequence[np.ndarray],
    iop: Sequence[float] = AXIAL,
    pixel_spacing: Sequence[float] = (0.5, 0.8),
    study_uid: str | None = None,
    series_uid: str | None = None,
    instance_order: Sequence[int] | None = None,
    name: str = "IM",
    **tags,
) -> list[Path]:
    """Write a single-frame MR series; ``volume`` is ``(slices, rows, columns)`` int16.

    ``instance_order`` gives each slice's InstanceNumber (to check that ingest sorts by
    position, not by instance number).
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    paths = []
    for k, (pixels, ipp) in enumerate(zip(volume, ipps, strict=True)):
        instance = instance_order[k] if instance_order is not None else k + 1
        ds = base_dataset(
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=series_uid,
            InstanceNumber=instance,
            ImageOrientationPatient=[float(v) for v in iop],
            ImagePositionPatient=[round(float(v), 6) for v in ipp],
            PixelSpacing=[float(v) for v in pixel_spacing],
            SliceThickness=1.0,
            **tags,
        )
        ds.set_pixel_data(np.asarray(pixels, dtype=np.int16), "MONOCHROME2", 16)
        path = folder / f"{name}{instance:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced(
    path: Path,
    volume: np.ndarray,
    ipps: Sequence[np.ndarray],
    iop: Sequence[float] = AXIAL,
    pixel_spacing: Sequence[float] = (0.5, 0.8),
    slopes: Sequence[float] | None = None,
) -> Path:
    """An enhanced MR file: ``volume`` ``(frames, rows, columns)`` uint16, one IPP per frame,
    orientation and spacing in the shared functional groups, rescale per frame."""
    ds = base_dataset(ENHANCED_MR_STORAGE, InstanceNumber=1, ImageType=["ORIGINAL", "PRIMARY"])
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = [float(v) for v in iop]
    measures = Dataset()
    measures.PixelSpacing = [float(v) for v in pixel_spacing]
    measures.SliceThickness = 1.0
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    items = []
    for index, ipp in enumerate(ipps):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [float(v) for v in ipp]
        item.PlanePositionSequence = DicomSequence([position])
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = index + 1
        item.FrameContentSequence = DicomSequence([content])
        transform = Dataset()
        transform.RescaleSlope = float(slopes[index]) if slopes is not None else 1.0
        transform.RescaleIntercept = 0.0
        item.PixelValueTransformationSequence = DicomSequence([transform])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    ds.set_pixel_data(np.asarray(volume, dtype=np.uint16), "MONOCHROME2", 16)
    ds.save_as(path, enforce_file_format=True)
    return path


def random_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """``(slices, rows, columns)`` int16 values 0..999 with a fixed seed."""
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.int16)


def world_of_voxel(affine: np.ndarray, ijk: Sequence[float]) -> np.ndarray:
    """RAS+ mm of a voxel index."""
    return (affine @ np.r_[np.asarray(ijk, float), 1.0])[:3]


def expected_world(
    ipp: np.ndarray, iop: Sequence[float], pixel_spacing: Sequence[float], i: int, j: int
) -> np.ndarray:
    """RAS+ mm of pixel (row j, column i) of the slice at ``ipp``, from the DICOM standard."""
    row_dir, col_dir = np.asarray(iop[:3]), np.asarray(iop[3:6])
    lps = ipp + i * pixel_spacing[1] * row_dir + j * pixel_spacing[0] * col_dir
    return lps * np.array([-1.0, -1.0, 1.0])
