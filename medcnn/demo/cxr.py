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
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_ROOT_UID, ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

__all__ = [
    "CR_IMAGE_STORAGE",
    "DX_IMAGE_STORAGE_PRESENTATION",
    "DemoImage",
    "FINDINGS",
    "MANUFACTURER",
    "write_demo_cohort",
]

#: SOP Class UID of Digital X-Ray Image Storage - For Presentation (used for Modality DX).
DX_IMAGE_STORAGE_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
#: SOP Class UID of Computed Radiography Image Storage (used for Modality CR).
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
#: Manufacturer (0008,0070) written into every file.
MANUFACTURER = "medcnn-demo"
#: The two label values of ``labels.csv``: positive first.
FINDINGS = ("pneumonia", "no_finding")

_MIN_PATIENTS = 4
_MAX_SUFFIX_LEN = 6  # AccessionNumber is SH (16 chars); the base accession is 10 chars.
_SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]*$")

_FAMILY_NAMES = (
    "KOWALSKI", "NOWAK", "SMITH", "GARCIA", "MUELLER", "ROSSI", "TANAKA", "OKAFOR",
    "JOHANSSON", "MARTIN", "HERNANDEZ", "NGUYEN", "WILSON", "PETROV", "SILVA", "YILMAZ",
    "LINDQVIST", "MORENO", "WOJCIK", "SCHMIDT", "OLSEN", "KIM", "PATEL", "MURPHY",
)  # fmt: skip
_GIVEN_NAMES_F = (
    "ANNA", "MARIA", "EMMA", "SOFIA", "JULIA", "LAURA", "HANNA", "OLIVIA", "CHLOE",
    "IRENE", "NADIA", "ZOFIA", "MIREILLE", "ASTRID", "GRACE", "YUKI",
)  # fmt: skip
_GIVEN_NAMES_M = (
    "JAN", "PIOTR", "JOHN", "LUCAS", "MATEO", "HANS", "MARCO", "KENJI", "OLIVER", "TOMAS",
    "ERIK", "OMAR", "NIKOLAI", "SAMUEL", "JONAS", "VICTOR",
)  # fmt: skip

_NOTES_TEXT = (
    "Scanned requisition - transcription notes\n"
    "This file was dropped into the export folder by the scanning workstation.\n"
    "It is plain text and not a DICOM file.\n"
)


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


@dataclass(frozen=True)
class _Patient:
    index: int
    patient_id: str
    family: str
    given: str
    sex: str
    birth: dt.date
    anatomy: dict[str, float]


@dataclass(frozen=True)
class _Study:
    index: int  # global study index, 0-based
    patient: _Patient
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

    out_dir = Path(out_dir)
    dicom_root = out_dir / "dicom"
    if dicom_root.exists() and any(dicom_root.iterdir()):
        raise FileExistsError(f"{dicom_root} exists and is not empty; use a fresh out_dir")
    dicom_root.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    uid_base = [
        "medcnn-demo",
        f"seed={seed}",
        f"n={n_patients}",
        f"size={image_size}",
        f"suffix={identifier_suffix}",
    ]

    # One extra patient owns the broken files; drawn with the others so IDs stay unique.
    patients = _draw_patients(rng, n_patients + 1, identifier_suffix, seed)
    stray = patients.pop()
    studies = _draw_studies(rng, patients, image_size, identifier_suffix)

    n_files = len(studies) + (2 if broken_files else 0)
    folders = _draw_folders(rng, dicom_root, n_files)
    names = _draw_file_names(rng, n_files)
    used: set[Path] = set()

    def place(k: int) -> Path:
        folder = folders[int(rng.integers(len(folders)))]
        path = folder / names[k]
        while path in used:  # practically never: names are unique by construction
            path = folder / f"{names[k]}_{len(used)}"
        used.add(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    images: list[DemoImage] = []
    for study in studies:
        uids = _study_uids(uid_base, study.patient.patient_id, study.number)
        pixels, opacity = _render_study(seed, study)
        ds = _build_dataset(
            study, uids, pixels, _study_id(rng), np.random.default_rng((seed, 3, study.index))
        )
        path = place(study.index)
        ds.save_as(path, enforce_file_format=True)
        images.append(
            DemoImage(
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
        )

    if broken_files:
        _write_broken_files(
            rng,
            seed,
            uid_base,
            stray,
            image_size,
            identifier_suffix,
            {s.accession for s in studies},
            place(len(studies)),
            place(len(studies) + 1),
            folders,
        )

    order = rng.permutation(len(studies))
    with open(out_dir / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["accession_number", "finding"])
        for k in order:
            writer.writerow([studies[int(k)].accession, studies[int(k)].finding])
    return images


# --------------------------------------------------------------------------- metadata


def _balanced(rng: np.random.Generator, n: int, values: list, counts: list[int]) -> list:
    """A shuffled list of ``n`` values with ``counts[i]`` copies of ``values[i]``."""
    items = [v for v, c in zip(values, counts, strict=True) for _ in range(c)]
    assert len(items) == n
    return [items[int(i)] for i in rng.permutation(n)]


def _draw_patients(rng: np.random.Generator, n: int, suffix: str, seed: int) -> list[_Patient]:
    patients = []
    seen: set[str] = set()
    for i in range(n):
        while True:
            pid = f"MRN{int(rng.integers(10_000_000, 100_000_000)):08d}{suffix}"
            if pid not in seen:
                seen.add(pid)
                break
        sex = "F" if rng.random() < 0.5 else "M"
        given_pool = _GIVEN_NAMES_F if sex == "F" else _GIVEN_NAMES_M
        family = _FAMILY_NAMES[int(rng.integers(len(_FAMILY_NAMES)))] + suffix
        given = given_pool[int(rng.integers(len(given_pool)))]
        birth = dt.date(1935, 1, 1) + dt.timedelta(days=int(rng.integers(0, 70 * 365)))
        patients.append(
            _Patient(
                index=i,
                patient_id=pid,
                family=family,
                given=given,
                sex=sex,
                birth=birth,
                anatomy=_draw_anatomy(np.random.default_rng((seed, 1, i))),
            )
        )
    return patients


def _draw_anatomy(rng: np.random.Generator) -> dict[str, float]:
    """Per-patient body shape, in units of image rows (see :func:`_render`)."""
    return {
        "body_half_width": rng.uniform(0.36, 0.42),
        "lung_dx": rng.uniform(0.17, 0.20),
        "lung_cy": rng.uniform(-0.04, 0.02),
        "lung_rx": rng.uniform(0.115, 0.135),
        "lung_ry": rng.uniform(0.25, 0.30),
        "heart_rx": rng.uniform(0.12, 0.15),
        "heart_ry": rng.uniform(0.10, 0.12),
        "heart_dx": rng.uniform(0.03, 0.06),
        "rib_start": rng.uniform(-0.33, -0.29),
        "rib_step": rng.uniform(0.050, 0.058),
        "rib_bend": rng.uniform(0.9, 1.4),
        "tissue": rng.uniform(0.46, 0.56),
        "lung_dark": rng.uniform(0.28, 0.34),
    }


def _draw_studies(
    rng: np.random.Generator, patients: list[_Patient], image_size: int, suffix: str
) -> list[_Study]:
    n_pat = len(patients)
    n_two = max(1, round(n_pat / 3))
    two = set(int(i) for i in rng.choice(n_pat, size=n_two, replace=False))
    slots = [(p, k) for p in patients for k in range(1 + (p.index in two))]
    n = len(slots)

    n_pos = min(n - 1, max(1, round(0.45 * n)))
    findings = _balanced(rng, n, list(FINDINGS), [n_pos, n - n_pos])
    n_mono1 = min(n - 1, max(1, round(0.2 * n)))
    photometric = _balanced(rng, n, ["MONOCHROME1", "MONOCHROME2"], [n_mono1, n - n_mono1])
    n_cr = n // 2
    modality = _balanced(rng, n, ["CR", "DX"], [n_cr, n - n_cr])
    bits = _balanced(rng, n, [12, 14, 16], [n - 2 * (n // 3), n // 3, n // 3])
    rescale_opts: list = [None, (1.0, 0.0), (2.0, -1024.0)]
    rescale = _balanced(rng, n, rescale_opts, [n - 2 * (n // 3), n // 3, n // 3])
    n_ps = n // 2
    spacing_tag = _balanced(rng, n, ["PixelSpacing", "ImagerPixelSpacing"], [n_ps, n - n_ps])
    n_ns = max(1, round(0.15 * n))
    non_square = _balanced(rng, n, [True, False], [n_ns, n - n_ns])

    base_spacing = 0.14 * 2048 / image_size
    accessions: set[str] = set()
    studies = []
    first_date: dt.date | None = None
    for i, (patient, k) in enumerate(slots):
        if k == 0:
            first_date = dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
            date = first_date
        else:
            assert first_date is not None
            date = first_date + dt.timedelta(days=int(rng.integers(14, 500)))
        hh, mm, ss = (int(v) for v in rng.integers((7, 0, 0), (20, 60, 60)))
        time = f"{hh:02d}{mm:02d}{ss:02d}"
        while True:
            if rng.random() < 0.5:
                acc = f"{int(rng.integers(10**9, 10**10)):010d}{suffix}"
            else:
                acc = f"ACC{int(rng.integers(10**6, 10**7)):07d}{suffix}"
            if acc not in accessions:
                accessions.add(acc)
                break
        studies.append(
            _Study(
                index=i,
                patient=patient,
                number=k + 1,
                date=date,
                time=time,
                accession=acc,
                finding=findings[i],
                photometric=photometric[i],
                modality=modality[i],
                bits_stored=int(bits[i]),
                rescale=rescale[i],
                spacing_tag=spacing_tag[i],
                spacing_mm=round(base_spacing * rng.uniform(0.95, 1.05), 4),
                view="PA" if rng.random() < 0.75 else "AP",
                rows=image_size,
                cols=int(image_size * 0.875) if non_square[i] else image_size,
            )
        )
    return studies


def _uid(entropy_srcs: list[str]) -> str:
    """A reproducible UID: a hash of ``entropy_srcs`` below pydicom's root UID.

    pydicom's ``generate_uid(prefix=None, ...)`` ignores ``entropy_srcs`` and returns a
    random ``2.25.<uuid4>`` UID, so a real prefix is needed for reproducibility.
    """
    return str(generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=entropy_srcs))


def _study_uids(uid_base: list[str], patient_id: str, number: int) -> dict[str, str]:
    src = [*uid_base, f"patient={patient_id}", f"study={number}"]
    return {
        "study": _uid([*src, "StudyInstanceUID"]),
        "series": _uid([*src, "SeriesInstanceUID"]),
        "sop": _uid([*src, "SOPInstanceUID"]),
    }


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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], grid: int) -> np.ndarray:
    """Smooth random field of ``shape`` (rows, cols), zero mean, unit-ish amplitude."""
    coarse = rng.standard_normal((grid, grid))
    out = ndimage.zoom(
        coarse, (shape[0] / grid, shape[1] / grid), order=3, mode="nearest", grid_mode=True
    )
    return out[: shape[0], : shape[1]]


def _render(
    rng: np.random.Generator,
    rows: int,
    cols: int,
    anatomy: dict[str, float],
    positive: bool,
) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Render one chest radiograph.

    Coordinates are in units of image rows: ``y`` in [-0.5, 0.5) from top to bottom,
    ``x`` = (column - cols / 2) / rows, so pixels are square and a narrower image shows a
    narrower field of view. The patient's left is on the image right (heart on the right).

    Returns:
        ``(brightness, opacity)``: brightness float64 of shape (rows, cols) in [0, 1]
        (1 = white/bone, MONOCHROME2 sense) and, for positives, the opacity
        (row, column, radius) in pixels, else ``None``.
    """
    a = anatomy
    y = ((np.arange(rows) + 0.5) / rows - 0.5)[:, None]
    x = ((np.arange(cols) + 0.5 - cols / 2) / rows)[None, :]
    ax = np.abs(x)
    edge = 0.012

    # Body: soft slab narrowing to the neck at the top, shoulders around y = -0.38.
    half_w = 0.11 + (a["body_half_width"] - 0.11) * _sigmoid((y + 0.38) / 0.03)
    body = _sigmoid((half_w - ax) / edge)
    tissue = a["tissue"] + 0.12 * (1.0 - np.clip(ax / a["body_half_width"], 0, 1) ** 2)

    # Heart (bulging to the image right) and mediastinum: they cut the medial lung border.
    hx, hy = a["heart_dx"], a["lung_cy"] + a["lung_ry"] - 0.06
    rh = np.sqrt(((x - hx) / a["heart_rx"]) ** 2 + ((y - hy) / a["heart_ry"]) ** 2)
    heart = _sigmoid((1.0 - rh) / 0.05)
    medi_w = 0.05 + 0.02 * _sigmoid((y + 0.1) / 0.05)
    mediastinum = np.maximum(heart, _sigmoid((medi_w - ax) / edge) * _sigmoid((y + 0.45) / 0.02))
    spine = _sigmoid((0.028 - ax) / 0.008)

    # Lungs: two ellipses, wider at the base (costophrenic angles), apex narrower.
    lung = np.zeros((rows, cols))
    lung_fields = []
    for side in (-1.0, 1.0):
        cx = side * a["lung_dx"]
        ry = a["lung_ry"]
        t = np.clip((y - a["lung_cy"]) / ry, -1.0, 1.0)
        rx = a["lung_rx"] * (0.85 + 0.22 * t)
        r = np.sqrt(((x - cx) / rx) ** 2 + ((y - a["lung_cy"]) / ry) ** 2)
        field = _sigmoid((1.0 - r) / 0.06) * (1.0 - mediastinum)
        lung = np.maximum(lung, field)
        lung_fields.append((field, cx))
    lung_bottom = a["lung_cy"] + a["lung_ry"]
    # Below the diaphragm domes: abdomen, as dense as the heart it merges with.
    abdomen = _sigmoid((y - lung_bottom + 0.06 - 0.5 * (ax - 0.15) ** 2) / 0.02)

    # Posterior ribs: arches, highest at |x| ~ 0.15, fading below the lung bases.
    ribs = np.zeros((rows, cols))
    for k in range(10):
        y0 = a["rib_start"] + k * a["rib_step"]
        yc = y0 + a["rib_bend"] * (ax - 0.15) ** 2 + 0.02 * k * ax
        ribs = np.maximum(ribs, np.exp(-(((y - yc) / 0.010) ** 2)))
    ribs *= _sigmoid((ax - 0.04) / 0.01) * _sigmoid((a["body_half_width"] - 0.02 - ax) / 0.02)
    ribs *= _sigmoid((lung_bottom + 0.02 - y) / 0.02)
    # Clavicles: from the sternal notch up and out towards the shoulders.
    yc = a["lung_cy"] - a["lung_ry"] - 0.01 - 0.25 * (ax - 0.05)
    clavicles = np.exp(-(((y - yc) / 0.013) ** 2)) * _sigmoid((ax - 0.05) / 0.01)
    clavicles *= _sigmoid((a["body_half_width"] - 0.03 - ax) / 0.015)

    img = 0.04 + body * tissue
    img = img - a["lung_dark"] * lung * body
    img = img + 0.12 * np.maximum(mediastinum, abdomen) * body + 0.08 * spine * body
    img = img + 0.07 * ribs * (1.0 - 0.5 * mediastinum) * body + 0.10 * clavicles * body
    # Lung markings (vessels): mid-frequency texture, denser towards the hila.
    img = img + 0.03 * lung * _smooth_noise(rng, (rows, cols), 24)

    opacity = None
    if positive:
        field, cx = lung_fields[int(rng.integers(2))]
        radius = rng.uniform(0.10, 0.16) * cols / rows
        # Centre inside the chosen lung, biased laterally away from the heart border;
        # redrawn until the lung covers most of the opacity's inner disc (best of 32 kept).
        best = (-1.0, 0.0, 0.0)
        for _ in range(32):
            ox = cx + rng.uniform(-0.2, 0.45) * a["lung_rx"] * np.sign(cx)
            oy = a["lung_cy"] + rng.uniform(-0.45, 0.55) * a["lung_ry"]
            inner = (x - ox) ** 2 + (y - oy) ** 2 <= (0.5 * radius) ** 2
            cover = float(field[inner].mean()) if inner.any() else 0.0
            if cover > best[0]:
                best = (cover, ox, oy)
            if cover >= 0.85:
                break
        _, ox, oy = best
        d = np.sqrt((x - ox) ** 2 + (y - oy) ** 2)
        blob = _sigmoid((radius - d) / (0.15 * radius))
        texture = 1.0 + 0.2 * _smooth_noise(rng, (rows, cols), 12)
        amp = rng.uniform(0.30, 0.38)
        # Confined to the lung field: consolidated lung turns as dense as soft tissue or more.
        img = img + amp * blob * texture * field
        opacity = (
            float((oy + 0.5) * rows - 0.5),
            float(ox * rows + cols / 2 - 0.5),
            float(radius * rows),
        )

    # Low-frequency exposure variation and quantum noise.
    img = img * (1.0 + 0.05 * _smooth_noise(rng, (rows, cols), 4))
    img = img + rng.normal(0.0, 0.012, size=(rows, cols))
    return np.clip(img, 0.0, 1.0), opacity


def _render_study(seed: int, study: _Study) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    rng = np.random.default_rng((seed, 2, study.index))
    return _render(rng, study.rows, study.cols, study.patient.anatomy, study.finding == "pneumonia")


# --------------------------------------------------------------------------- DICOM


def _to_stored(
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


def _base_dataset(study: _Study, uids: dict[str, str], study_id: str) -> Dataset:
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


def _study_id(rng: np.random.Generator) -> str:
    return str(int(rng.integers(1, 100_000)))


def _build_dataset(
    study: _Study,
    uids: dict[str, str],
    brightness: np.ndarray | None,
    study_id: str,
    pixel_rng: np.random.Generator,
) -> Dataset:
    """Build the dataset of one study; ``brightness`` None gives a header-only file."""
    ds = _base_dataset(study, uids, study_id)
    if brightness is None:
        # Header-only: declare the image pixel module but carry no Pixel Data.
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = study.photometric
        ds.Rows, ds.Columns = study.rows, study.cols
        ds.BitsAllocated, ds.BitsStored = 16, study.bits_stored
        ds.HighBit, ds.PixelRepresentation = study.bits_stored - 1, 0
        return ds

    stored, low, width = _to_stored(pixel_rng, brightness, study.bits_stored, study.photometric)
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


def _write_broken_files(
    rng: np.random.Generator,
    seed: int,
    uid_base: list[str],
    stray: _Patient,
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
        study = _Study(index=10_000 + number, number=number, accession=accession, **base)
        uids = _study_uids(uid_base, stray.patient_id, number)
        if number == 1:
            img, _ = _render(
                np.random.default_rng((seed, 4)),
                image_size,
                image_size,
                stray.anatomy,
                positive=False,
            )
            ds = _build_dataset(study, uids, img, _study_id(rng), np.random.default_rng((seed, 5)))
            ds.save_as(path, enforce_file_format=True)
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * 0.6)])
        else:
            ds = _build_dataset(study, uids, None, _study_id(rng), rng)
            ds.save_as(path, enforce_file_format=True)

    notes_dir = folders[int(rng.integers(len(folders)))]
    notes_dir.mkdir(parents=True, exist_ok=True)
    (notes_dir / "notes.dcm").write_text(_NOTES_TEXT, encoding="utf-8")
