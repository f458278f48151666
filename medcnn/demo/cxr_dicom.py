"""The demo radiographs as DICOM: patients and studies drawn for the cohort, their datasets
(DX or CR, stored bits, photometric interpretation, spacing tags) and the broken files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_ROOT_UID, ExplicitVRLittleEndian, generate_uid

from medcnn.demo.cxr_render import render_radiograph

#: SOP Class UID of Digital X-Ray Image Storage - For Presentation (used for Modality DX).
DX_IMAGE_STORAGE_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


#: SOP Class UID of Computed Radiography Image Storage (used for Modality CR).
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


#: Manufacturer (0008,0070) written into every file.
MANUFACTURER = "medcnn-demo"


_NOTES_TEXT = (
    "Scanned requisition - transcription notes\n"
    "This file was dropped into the export folder by the scanning workstation.\n"
    "It is plain text and not a DICOM file.\n"
)


@dataclass(frozen=True)
class DemoPatient:
    index: int
    patient_id: str
    family: str
    given: str
    sex: str
    birth: dt.date
    anatomy: dict[str, float]


@dataclass(frozen=True)
class DemoStudy:
    index: int  # global study index, 0-based
    patient: DemoPatient
    number: int  # 1 or 2 within the patient
    date: dt.date
    time: str
    accession: str
    finding: str
    photometric: str
    modality: str
    bits_stored: int
    rescale: tuple[float, float] | None
    spacing_tag: str  # "PixelSpacing" or "ImagerPixelSpacing"
    spacing_mm: float
    view: str
    rows: int
    cols: int


def demo_uid(entropy_srcs: list[str]) -> str:
    """A reproducible UID: a hash of ``entropy_srcs`` below pydicom's root UID.

    pydicom's ``generate_uid(prefix=None, ...)`` ignores ``entropy_srcs`` and returns a
    random ``2.25.<uuid4>`` UID, so a real prefix is needed for reproducibility.
    """
    return str(generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=entropy_srcs))


def study_uids(uid_base: list[str], patient_id: str, number: int) -> dict[str, str]:
    src = [*uid_base, f"patient={patient_id}", f"study={number}"]
    return {
        "study": demo_uid([*src, "StudyInstanceUID"]),
        "series": demo_uid([*src, "SeriesInstanceUID"]),
        "sop": demo_uid([*src, "SOPInstanceUID"]),
    }


def render_study(
    seed: int, study: DemoStudy
) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    rng = np.random.default_rng((seed, 2, study.index))
    return render_radiograph(
        rng, study.rows, study.cols, study.patient.anatomy, study.finding == "pneumonia"
    )


def to_stored(
    rng: np.random.Generator, brightness: np.ndarray, bits: int, photometric: str
) -> tuple[np.ndarray, float, float]:
    """Quantise brightness in [0, 1] to uint16 stored values.

    Returns:
        ``(stored, low, width)``: stored uint16 (rows, cols) and the stored-value interval
        ``[low, low + width]`` that maps linearly onto brightness [0, 1] (reversed for
        MONOCHROME1, where brightness 1 is stored as ``low``).
    """
    maxval = 2**bits - 1
    scale = float(np.round(rng.uniform(0.60, 0.92) * maxval))
    offset = float(np.round(rng.uniform(0.02, 0.98 - scale / maxval) * maxval))
    mono2 = offset + brightness * scale
    if photometric == "MONOCHROME1":
        stored = maxval - mono2
        low = maxval - offset - scale
    else:
        stored = mono2
        low = offset
    return np.rint(stored).astype(np.uint16), low, scale


def base_dataset(study: DemoStudy, uids: dict[str, str], study_id: str) -> Dataset:
    p = study.patient
    dx = study.modality == "DX"
    sop_class = DX_IMAGE_STORAGE_PRESENTATION if dx else CR_IMAGE_STORAGE

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uids["sop"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uids["sop"]
    date = study.date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study.time
    ds.AccessionNumber = study.accession
    ds.Modality = study.modality
    if dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = "Demo General Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"XR CHEST {study.view}"
    ds.SeriesDescription = f"CHEST {study.view}"
    ds.PatientName = f"{p.family}^{p.given}"
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth.strftime("%Y%m%d")
    ds.PatientSex = p.sex
    age = (study.date - p.birth).days // 365
    ds.PatientAge = f"{age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = study.view
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = study_id
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def draw_study_id(rng: np.random.Generator) -> str:
    return str(int(rng.integers(1, 100_000)))


def build_dataset(
    study: DemoStudy,
    uids: dict[str, str],
    brightness: np.ndarray | None,
    study_id: str,
    pixel_rng: np.random.Generator,
) -> Dataset:
    """Build the dataset of one study; ``brightness`` None gives a header-only file."""
    ds = base_dataset(study, uids, study_id)
    if brightness is None:
        # Header-only: declare the image pixel module but carry no Pixel Data.
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = study.photometric
        ds.Rows, ds.Columns = study.rows, study.cols
        ds.BitsAllocated, ds.BitsStored = 16, study.bits_stored
        ds.HighBit, ds.PixelRepresentation = study.bits_stored - 1, 0
        return ds

    stored, low, width = to_stored(pixel_rng, brightness, study.bits_stored, study.photometric)
    ds.set_pixel_data(stored, study.photometric, study.bits_stored, generate_instance_uid=False)
    slope, intercept = study.rescale if study.rescale is not None else (1.0, 0.0)
    if study.rescale is not None:
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleType = "US"
    ww = width * slope
    wc = low * slope + intercept + ww / 2
    ds.WindowCenter = f"{wc:.1f}"
    ds.WindowWidth = f"{ww:.1f}"
    ds.VOILUTFunction = "LINEAR"
    spacing = f"{study.spacing_mm:.4f}"
    setattr(ds, study.spacing_tag, [spacing, spacing])
    if study.modality == "DX":
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelIntensityRelationship = "LOG"
        # -1: higher values mean less beam intensity (bone bright), as in MONOCHROME2.
        ds.PixelIntensityRelationshipSign = -1 if study.photometric == "MONOCHROME2" else 1
    return ds


def write_broken_files(
    rng: np.random.Generator,
    seed: int,
    uid_base: list[str],
    stray: DemoPatient,
    image_size: int,
    suffix: str,
    taken_accessions: set[str],
    truncated_path: Path,
    header_only_path: Path,
    folders: list[Path],
) -> None:
    """Write a truncated DICOM, a header-only DICOM and a plain-text ``notes.dcm``."""
    base = dict(
        patient=stray,
        date=dt.date(2021, 6, 1) + dt.timedelta(days=int(rng.integers(0, 365))),
        time="101500",
        finding="no_finding",
        photometric="MONOCHROME2",
        modality="DX",
        bits_stored=12,
        rescale=None,
        spacing_tag="ImagerPixelSpacing",
        spacing_mm=round(0.14 * 2048 / image_size, 4),
        view="PA",
        rows=image_size,
        cols=image_size,
    )
    for number, path in ((1, truncated_path), (2, header_only_path)):
        accession = f"{int(rng.integers(10**9, 10**10)):010d}{suffix}"
        while accession in taken_accessions:
            accession = f"{int(rng.integers(10**9, 10**10)):010d}{suffix}"
        study = DemoStudy(index=10_000 + number, number=number, accession=accession, **base)
        uids = study_uids(uid_base, stray.patient_id, number)
        if number == 1:
            img, _ = render_radiograph(
                np.random.default_rng((seed, 4)),
                image_size,
                image_size,
                stray.anatomy,
                positive=False,
            )
            ds = build_dataset(
                study, uids, img, draw_study_id(rng), np.random.default_rng((seed, 5))
            )
            ds.save_as(path, enforce_file_format=True)
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * 0.6)])
        else:
            ds = build_dataset(study, uids, None, draw_study_id(rng), rng)
            ds.save_as(path, enforce_file_format=True)

    notes_dir = folders[int(rng.integers(len(folders)))]
    notes_dir.mkdir(parents=True, exist_ok=True)
    (notes_dir / "notes.dcm").write_text(_NOTES_TEXT, encoding="utf-8")
