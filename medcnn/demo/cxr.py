"""Synthetic chest-radiograph cohort written as real DICOM files.

The demo cohort stands in for a hospital export: real DICOM Part 10 files (Explicit VR
Little Endian) in a messy folder tree, with a label table keyed by AccessionNumber, as a
radiology report table would be. Everything is deterministic for a fixed ``seed``: the
random draws come from :func:`numpy.random.default_rng` only and every UID is derived from
the arguments with :func:`pydicom.uid.generate_uid` (pydicom's root prefix plus fixed entropy
sources; note that ``prefix=None`` would ignore the entropy sources and return a random UUID
UID), so two runs with the same arguments write byte-identical files.

What a reader has to cope with (on purpose):

* Modality ``DX`` (Digital X-Ray Image Storage - For Presentation) and ``CR`` (Computed
  Radiography Image Storage) mixed.
* About 20 % of the images are ``MONOCHROME1`` (stored inverted: bone is a LOW value), the
  rest ``MONOCHROME2``.
* ``BitsStored`` 12, 14 or 16 (``BitsAllocated`` 16, unsigned), stored values spanning
  60-92 % of that range; some images carry ``RescaleSlope``/``RescaleIntercept`` (1/0 or
  2/-1024), all carry ``WindowCenter``/``WindowWidth``.
* ``PixelSpacing`` on some images and ``ImagerPixelSpacing`` on others (about
  ``0.14 * 2048 / image_size`` mm); a few images are non-square
  (``image_size`` rows x ``int(0.875 * image_size)`` columns).
* About a third of the patients have two studies; files sit in nested folders of random
  hex names (depth 1-3), named ``IM00001``-style or with hex names, with no extension,
  ``.dcm`` or ``.DCM``; no file or folder name contains a patient identifier.
* Optionally (``broken_files``) three unusable files: a truncated DICOM, a plain-text
  ``notes.dcm`` and a header-only DICOM without *Pixel Data*.

A ``pneumonia`` image carries one bright, soft-edged consolidation inside one lung field
(radius 10-16 % of the image width); ``no_finding`` images have none.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcnn.demo.cxr_cohort import FINDINGS, DemoStudy, draw_patients, draw_studies
from medcnn.demo.cxr_dicom import (
    CR_IMAGE_STORAGE,
    DX_IMAGE_STORAGE_PRESENTATION,
    MANUFACTURER,
    build_dataset,
    draw_study_id,
    render_study,
    study_uids,
    write_broken_files,
)

__all__ = [
    "CR_IMAGE_STORAGE",
    "DX_IMAGE_STORAGE_PRESENTATION",
    "DemoImage",
    "FINDINGS",
    "MANUFACTURER",
    "write_demo_cohort",
]


_MIN_PATIENTS = 4
_MAX_SUFFIX_LEN = 6  # AccessionNumber is SH (16 chars); the base accession is 10 chars.
_SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class DemoImage:
    """One valid image file written by :func:`write_demo_cohort`.

    Attributes:
        path: The written DICOM file (``out_dir/dicom/...``; may have no extension).
        patient_id: PatientID (0010,0020), ``"MRN"`` + 8 digits + ``identifier_suffix``.
        patient_name: PatientName (0010,0010) as DICOM PN ``FAMILY^GIVEN``; the suffix is
            appended to the family name part.
        birth_date: PatientBirthDate (0010,0030), ``YYYYMMDD``.
        accession_number: AccessionNumber (0008,0050): 10 digits or ``"ACC"`` + 7 digits,
            then ``identifier_suffix``; the key of ``labels.csv``.
        study_uid: StudyInstanceUID (0020,000D).
        series_uid: SeriesInstanceUID (0020,000E).
        sop_uid: SOPInstanceUID (0008,0018).
        finding: ``"pneumonia"`` or ``"no_finding"`` (the study's label).
        photometric: PhotometricInterpretation, ``"MONOCHROME1"`` or ``"MONOCHROME2"``.
        modality: ``"DX"`` or ``"CR"``.
        study_date: StudyDate (0008,0020), ``YYYYMMDD``.
        opacity_center_rc: Ground-truth consolidation centre as (row, column) in pixels of
            the stored image (row 0 at the top, column 0 at the left), or ``None`` for
            ``no_finding`` images.
        opacity_radius_px: Ground-truth consolidation radius in pixels (the half-intensity
            radius of the soft-edged disc, before it is clipped to the lung field), or
            ``None`` for ``no_finding`` images.
    """

    path: Path
    patient_id: str
    patient_name: str
    birth_date: str
    accession_number: str
    study_uid: str
    series_uid: str
    sop_uid: str
    finding: str
    photometric: str
    modality: str = ""
    study_date: str = ""
    opacity_center_rc: tuple[float, float] | None = None
    opacity_radius_px: float | None = None


def write_demo_cohort(
    out_dir: Path,
    n_patients: int = 48,
    seed: int = 0,
    image_size: int = 256,
    broken_files: bool = True,
    identifier_suffix: str = "",
) -> list[DemoImage]:
    """Write a synthetic chest-radiograph cohort as DICOM files plus a label table.

    Writes ``out_dir/dicom/<hex>[/<hex>[/<hex>]]/<file>`` (one file per study: one series,
    one instance) and ``out_dir/labels.csv`` with columns ``accession_number,finding``,
    one row per study, rows in shuffled order. About a third of the patients (at least one)
    have two studies on different dates; about 45 % of the studies are ``pneumonia``,
    about 20 % of the images are MONOCHROME1, about half are CR and half DX, about 15 %
    are non-square.

    Pixel data: 2D, shape (Rows, Columns) = (``image_size``, ``image_size``) or
    (``image_size``, ``int(0.875 * image_size)``), row 0 at the top (head), column 0 at the
    patient's right (PatientOrientation ``L\\F``), uint16 with 12, 14 or 16 bits stored.
    The displayed brightness ``b`` in [0, 1] (1 = bone/white) is recovered exactly by
    ``v = slope * stored + intercept`` (slope 1, intercept 0 when absent), then
    ``b = (v - (WindowCenter - WindowWidth / 2)) / WindowWidth`` and, for MONOCHROME1,
    ``b = 1 - b``. Pixels are square; the spacing (mm) is in PixelSpacing or
    ImagerPixelSpacing.

    Args:
        out_dir: Output folder; created if missing. ``out_dir/dicom`` must not exist yet or
            be empty.
        n_patients: Number of patients with valid images (>= 4).
        seed: Non-negative random seed; the same arguments give byte-identical files.
        image_size: Rows of every image in pixels (>= 32); also the columns of square ones.
        broken_files: Also write three unusable files into the tree (a DICOM truncated to
            about 60 % of its bytes, a plain-text ``notes.dcm`` and a DICOM header without
            Pixel Data). They belong to an extra patient that is not in ``labels.csv`` and
            are not returned.
        identifier_suffix: Appended to every PatientID, PatientName family name and
            AccessionNumber (including those of the broken files) so tests can search
            outputs for identifier leaks. At most 6 characters of ``[A-Za-z0-9_-]``.

    Returns:
        One :class:`DemoImage` per valid image, ordered by patient, then study date.

    Raises:
        ValueError: If ``n_patients < 4``, ``image_size < 32``, ``seed < 0`` or the suffix
            is too long or has characters not allowed in the identifiers.
        FileExistsError: If ``out_dir/dicom`` exists and is not empty.
    """
    _check_arguments(n_patients, image_size, seed, identifier_suffix)
    out_dir = Path(out_dir)
    dicom_root = _fresh_folder(out_dir / "dicom")
    rng = np.random.default_rng(seed)
    uid_base = [f"seed={seed}", f"n={n_patients}", f"size={image_size}"]
    uid_base = ["medcnn-demo", *uid_base, f"suffix={identifier_suffix}"]

    # One extra patient owns the broken files; drawn with the others so IDs stay unique.
    patients = draw_patients(rng, n_patients + 1, identifier_suffix, seed)
    stray = patients.pop()
    studies = draw_studies(rng, patients, image_size, identifier_suffix)

    n_files = len(studies) + (2 if broken_files else 0)
    folders = _draw_folders(rng, dicom_root, n_files)
    place = _Placer(rng, folders, _draw_file_names(rng, n_files))

    images = [_write_study(rng, seed, uid_base, study, place) for study in studies]

    if broken_files:
        taken = {s.accession for s in studies}
        paths = (place(len(studies)), place(len(studies) + 1))
        drawn = (rng, seed, uid_base, stray, image_size, identifier_suffix, taken)
        write_broken_files(*drawn, *paths, folders)

    _write_labels(out_dir / "labels.csv", studies, rng.permutation(len(studies)))
    return images


def _fresh_folder(folder: Path) -> Path:
    """``folder``, created; it must not exist yet or be empty."""
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not empty; use a fresh out_dir")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_arguments(n_patients: int, image_size: int, seed: int, identifier_suffix: str) -> None:
    """The ``ValueError`` checks of :func:`write_demo_cohort`."""
    if n_patients < _MIN_PATIENTS:
        raise ValueError(
            f"n_patients must be at least {_MIN_PATIENTS} (got {n_patients}): the demo "
            "cohort needs both findings, both photometric interpretations and a two-study "
            "patient"
        )
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels (got {image_size})")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed})")
    if len(identifier_suffix) > _MAX_SUFFIX_LEN or not _SUFFIX_RE.match(identifier_suffix):
        raise ValueError(
            f"identifier_suffix must be at most {_MAX_SUFFIX_LEN} characters of "
            f"[A-Za-z0-9_-] (AccessionNumber is limited to 16 characters); "
            f"got {identifier_suffix!r}"
        )


class _Placer:
    """Where file ``k`` goes: its drawn name in a folder drawn from ``rng`` (created), never
    a path used before."""

    def __init__(self, rng: np.random.Generator, folders: list[Path], names: list[str]) -> None:
        self.rng, self.folders, self.names = rng, folders, names
        self.used: set[Path] = set()

    def __call__(self, k: int) -> Path:
        folder = self.folders[int(self.rng.integers(len(self.folders)))]
        path = folder / self.names[k]
        while path in self.used:  # practically never: names are unique by construction
            path = folder / f"{self.names[k]}_{len(self.used)}"
        self.used.add(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def _write_study(
    rng: np.random.Generator, seed: int, uid_base: list[str], study: DemoStudy, place: _Placer
) -> DemoImage:
    """Render one study, write it as a DICOM file where ``place`` says, and describe it."""
    uids = study_uids(uid_base, study.patient.patient_id, study.number)
    pixels, opacity = render_study(seed, study)
    ds = build_dataset(
        study, uids, pixels, draw_study_id(rng), np.random.default_rng((seed, 3, study.index))
    )
    path = place(study.index)
    ds.save_as(path, enforce_file_format=True)
    return DemoImage(
        path=path,
        patient_id=study.patient.patient_id,
        patient_name=f"{study.patient.family}^{study.patient.given}",
        birth_date=study.patient.birth.strftime("%Y%m%d"),
        accession_number=study.accession,
        study_uid=uids["study"],
        series_uid=uids["series"],
        sop_uid=uids["sop"],
        finding=study.finding,
        photometric=study.photometric,
        modality=study.modality,
        study_date=study.date.strftime("%Y%m%d"),
        opacity_center_rc=None if opacity is None else (opacity[0], opacity[1]),
        opacity_radius_px=None if opacity is None else opacity[2],
    )


def _write_labels(path: Path, studies: list[DemoStudy], order: np.ndarray) -> None:
    """``labels.csv``: ``accession_number,finding``, one row per study in ``order``."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["accession_number", "finding"])
        for k in order:
            writer.writerow([studies[int(k)].accession, studies[int(k)].finding])


# --------------------------------------------------------------------------- metadata


def _hex(rng: np.random.Generator, n_chars: int) -> str:
    return "".join(f"{int(d):x}" for d in rng.integers(0, 16, size=n_chars))


def _draw_folders(rng: np.random.Generator, root: Path, n_files: int) -> list[Path]:
    """Leaf folders of depth 1-3 below ``root``, with random hex names."""
    n_top = max(2, n_files // 8)
    tops = [root / _hex(rng, int(rng.integers(2, 9))) for _ in range(n_top)]
    folders: list[Path] = []
    for _ in range(max(3, n_files // 3)):
        depth = int(rng.integers(1, 4))
        folder = tops[int(rng.integers(n_top))]
        for _ in range(depth - 1):
            folder = folder / _hex(rng, int(rng.integers(2, 9)))
        folders.append(folder)
    return sorted(set(folders))


def _draw_file_names(rng: np.random.Generator, n: int) -> list[str]:
    numbers = rng.permutation(n) + 1
    names = []
    for k in range(n):
        style = int(rng.integers(4))
        if style == 0:
            names.append(_hex(rng, 16))
        elif style == 1:
            names.append(f"IM{int(numbers[k]):05d}")
        elif style == 2:
            names.append(_hex(rng, 12) + ".dcm")
        else:
            names.append(f"IM{int(numbers[k]):05d}.DCM")
    return names


# --------------------------------------------------------------------------- pixels


# --------------------------------------------------------------------------- DICOM
