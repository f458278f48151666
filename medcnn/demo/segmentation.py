"""Synthetic segmentation cohorts: CT-like lesion series (DICOM) and nuclei tiles (PNG).

Two small cohorts for the segmentation tasks, written next to the chest-radiograph demo
(:mod:`medcnn.demo`), deterministic for a fixed ``seed`` (same seed, same bytes):

* :func:`write_ct_cohort` - ``out/<case>/ct/IM0001.dcm ...`` and ``out/<case>/mask/...``: one CT
  series per patient (CT Image Storage, 12 bits stored, RescaleIntercept -1024, so stored
  values are HU + 1024) of a body-like ellipse (subcutaneous fat -100 HU, soft tissue 40 HU,
  an organ 60 HU, spine and ribs 300-900 HU, air -1000 HU) holding 1-3 ellipsoid lesions
  (+-70..120 HU against their surroundings, 6-11 mm radii), with noise. The ground truth is a
  second series on the same geometry (same FrameOfReferenceUID, positions and orientation),
  SeriesDescription ``lesion mask``, values 0/1, which ingest takes as a label series
  (``ingest.label_series``).
  Every fourth patient from the second on is rotated in plane, every fourth from the third has
  its files numbered against the slice direction (ingest sorts by position, not by number).
* :func:`write_nuclei_cohort` - Data Science Bowl 2018 layout: ``out/<tile>/images/<tile>.png``
  (8-bit grey, fluorescence-like: textured nuclei of varied brightness, blurred, with shot
  noise) and ``out/<tile>/masks/NNN.png`` (one binary 0/255 PNG per nucleus, no two masks
  sharing a pixel). Most nuclei are placed against another one, so that many touch (8-adjacent)
  or overlap (the one drawn later hides the other, as in the Bowl's masks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_ROOT_UID, ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

__all__ = ["CT_IMAGE_STORAGE", "CtCase", "NucleiTile", "write_ct_cohort", "write_nuclei_cohort"]

#: SOP Class UID of CT Image Storage (both the CT and its lesion-mask series).
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: SeriesDescription of the ground-truth series (matches ``ingest.label_series``' default).
MASK_DESCRIPTION = "lesion mask"
_AIR, _FAT, _SOFT, _ORGAN = -1000.0, -100.0, 40.0, 60.0


@dataclass(frozen=True)
class CtCase:
    """What :func:`write_ct_cohort` wrote for one patient.

    Attributes:
        patient_id: PatientID (a realistic identifier: ingest must never let it out).
        folder: the patient's folder.
        n_lesions: ellipsoid lesions drawn.
        lesion_voxels: voxels labelled 1 in the mask series.
        rotation_deg: in-plane rotation of the image plane (0 for axial).
        reversed_numbers: InstanceNumber runs against the slice direction.
    """

    patient_id: str
    folder: Path
    n_lesions: int
    lesion_voxels: int
    rotation_deg: float
    reversed_numbers: bool


@dataclass(frozen=True)
class NucleiTile:
    """What :func:`write_nuclei_cohort` wrote for one tile.

    Attributes:
        name: the tile's folder name (a hex digest, as in the Bowl).
        n_nuclei: instance masks written.
        touching_pairs: pairs of nuclei whose masks are 8-adjacent.
    """

    name: str
    n_nuclei: int
    touching_pairs: int


def _uid(*parts: str) -> str:
    # A real prefix: generate_uid(prefix=None) ignores the entropy sources (random UID).
    return str(generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=["medcnn-demo-ct", *parts]))


def write_ct_cohort(
    out: Path,
    n_patients: int = 10,
    size: int = 64,
    n_slices: int = 32,
    spacing: tuple[float, float, float] = (1.5, 1.5, 3.0),
    seed: int = 0,
) -> list[CtCase]:
    """Write the synthetic CT lesion cohort as DICOM (one image and one mask series each).

    Args:
        out: folder to write (created; files already there with the same names are replaced).
        n_patients: patients (one study each).
        size: rows and columns of each slice.
        n_slices: slices per series.
        spacing: (column spacing, row spacing, slice spacing) in mm.
        seed: random seed; the same arguments give byte-identical files.

    Returns:
        one :class:`CtCase` per patient.

    Raises:
        ValueError: fewer than 1 patient, or a slice smaller than 32 pixels or 8 slices.
    """
    if n_patients < 1 or size < 32 or n_slices < 8:
        raise ValueError("ct demo: needs >= 1 patient, size >= 32 and >= 8 slices")
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(n_patients):
        patient_id = f"CT{seed:02d}{index:04d}{int(rng.integers(10, 99))}"
        hu, mask, n_lesions = _ct_volume(rng, size, n_slices, spacing)
        rotation = float(rng.uniform(12, 25)) if index % 4 == 1 else 0.0
        reverse = index % 4 == 2
        folder = out / f"case{index:03d}"
        uids = {
            "study": _uid(str(seed), patient_id, "study"),
            "frame": _uid(str(seed), patient_id, "frame"),
        }
        header = {
            "PatientName": f"Lesion^Demo{index:03d}",
            "PatientID": patient_id,
            "PatientBirthDate": f"19{int(rng.integers(40, 99))}0{int(rng.integers(1, 9))}15",
            "PatientSex": "F" if rng.random() < 0.5 else "M",
            "AccessionNumber": f"ACC{seed:02d}{index:05d}",
        }
        for kind, values in (("ct", hu), ("mask", mask)):
            _write_ct_series(
                folder / kind, values, kind, spacing, rotation, reverse, uids, header, seed
            )
        cases.append(CtCase(patient_id, folder, n_lesions, int(mask.sum()), rotation, reverse))
    return cases


def _ellipsoid(shape: tuple[int, int, int], centre, radii, spacing) -> np.ndarray:
    """Boolean ellipsoid in a ``(k, row, column)`` grid; centre and radii in mm."""
    k, r, c = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (
        ((c * spacing[0] - centre[0]) / radii[0]) ** 2
        + ((r * spacing[1] - centre[1]) / radii[1]) ** 2
        + ((k * spacing[2] - centre[2]) / radii[2]) ** 2
    ) <= 1.0


def _ct_volume(
    rng: np.random.Generator, size: int, n_slices: int, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, int]:
    """(HU ``(k, row, column)`` float32, lesion mask uint8, number of lesions)."""
    shape = (n_slices, size, size)
    dx, dy, dz = spacing
    width, height, depth = size * dx, size * dy, n_slices * dz
    cx, cy = width / 2 + rng.uniform(-3, 3), height / 2 + rng.uniform(-3, 3)
    ax, ay = width * rng.uniform(0.38, 0.45), height * rng.uniform(0.28, 0.35)
    far = depth * 50  # a cylinder: radius along k far beyond the volume
    body = _ellipsoid(shape, (cx, cy, 0), (ax, ay, far), spacing)
    f = size / 64  # anatomy scales with the slice; sizes below are for 64 pixels
    inner = _ellipsoid(shape, (cx, cy, 0), (ax - 4 * f * dx, ay - 4 * f * dy, far), spacing)
    hu = np.full(shape, _AIR, dtype=np.float32)
    hu[body] = _FAT
    hu[inner] = _SOFT
    organ = _ellipsoid(
        shape,
        (cx - ax * 0.35, cy - ay * 0.1, depth / 2),
        (ax * 0.45, ay * 0.55, depth * 0.6),
        spacing,
    )
    hu[organ & inner] = _ORGAN
    spine_c = (cx, cy + ay * 0.62)
    spine = _ellipsoid(shape, (*spine_c, 0), (ay * 0.22, ay * 0.2, far), spacing)
    marrow = _ellipsoid(shape, (*spine_c, 0), (ay * 0.13, ay * 0.11, far), spacing)
    hu[spine] = 800.0
    hu[marrow] = 300.0
    for angle in np.linspace(0, 2 * np.pi, 10, endpoint=False):
        rib_c = (cx + (ax - 7 * f * dx) * np.cos(angle), cy + (ay - 7 * f * dy) * np.sin(angle))
        rib_r = max(2.2 * f, 1.2)
        hu[_ellipsoid(shape, (*rib_c, 0), (rib_r * dx, rib_r * dy, far), spacing)] = 700.0
    soft = (hu > -200) & (hu < 200) & inner
    eroded = ndimage.binary_erosion(soft, iterations=2)
    mask = np.zeros(shape, dtype=np.uint8)
    n_lesions = int(rng.integers(1, 4))
    candidates = np.argwhere(eroded[2:-2] if eroded[2:-2].any() else soft[2:-2])
    drawn = 0
    for _ in range(n_lesions * 20):
        if drawn == n_lesions:
            break
        k, r, c = candidates[rng.integers(len(candidates))]
        k += 2
        radii = tuple(
            max(rng.uniform(lo, hi) * f, 2 * d)
            for lo, hi, d in ((6, 11, dx), (6, 11, dy), (6, 10, dz))
        )
        centre = (c * dx, r * dy, k * dz)
        lesion = _ellipsoid(shape, centre, radii, spacing) & soft
        if lesion.sum() < 8 or (lesion & (mask > 0)).any():
            continue
        contrast = rng.uniform(70, 120) * (1 if rng.random() < 0.5 else -1)
        hu[lesion] += contrast
        mask[lesion] = 1
        drawn += 1
    hu = ndimage.gaussian_filter(hu, sigma=(0.4, 0.6, 0.6))
    hu += rng.normal(0, 12, shape).astype(np.float32)
    return hu.astype(np.float32), mask, drawn


def _write_ct_series(
    folder: Path,
    values: np.ndarray,
    kind: str,
    spacing: tuple[float, float, float],
    rotation_deg: float,
    reverse: bool,
    uids: dict[str, str],
    header: dict[str, str],
    seed: int,
) -> None:
    """One series of ``values`` ``(k, row, column)``, one file per slice."""
    theta = np.deg2rad(rotation_deg)
    row_dir = np.array([np.cos(theta), np.sin(theta), 0.0])
    col_dir = np.array([-np.sin(theta), np.cos(theta), 0.0])
    normal = np.cross(row_dir, col_dir)
    n_slices, rows, columns = values.shape
    dx, dy, dz = spacing
    # Centre the slab on the isocentre (LPS mm), the first slice at the feet.
    origin = (
        -(columns * dx / 2) * row_dir - (rows * dy / 2) * col_dir - (n_slices * dz / 2) * normal
    )
    series_uid = _uid(str(seed), uids["study"], kind, "series")
    mask = kind == "mask"
    stored = (values if mask else np.clip(np.rint(values) + 1024, 0, 4095)).astype(np.uint16)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_slices):
        number = n_slices - k if reverse else k + 1
        sop = _uid(series_uid, str(k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_ROOT_UID + "1"
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = uids["study"]
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = uids["frame"]
        ds.PositionReferenceIndicator = ""
        for keyword, value in header.items():
            setattr(ds, keyword, value)
        ds.StudyDate = "20240115"
        ds.StudyTime = "101500"
        ds.StudyID = "1"
        ds.ReferringPhysicianName = ""
        ds.Modality = "CT"
        ds.Manufacturer = "medcnn-demo"
        ds.SeriesNumber = 2 if mask else 1
        ds.InstanceNumber = number
        ds.SeriesDescription = MASK_DESCRIPTION if mask else "abdomen lesion protocol"
        ds.ImageType = ["DERIVED", "SECONDARY"] if mask else ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + k * dz * normal]
        ds.PixelSpacing = [f"{dy:g}", f"{dx:g}"]  # row spacing, then column spacing
        ds.SliceThickness = f"{dz:g}"
        ds.SliceLocation = f"{float(np.dot(origin + k * dz * normal, normal)):.4f}"
        ds.KVP = "120"
        ds.set_pixel_data(stored[k], "MONOCHROME2", 8 if mask else 12, generate_instance_uid=False)
        ds.RescaleIntercept = "0" if mask else "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US" if mask else "HU"
        if not mask:
            ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.save_as(folder / f"IM{number:04d}.dcm", enforce_file_format=True)


def write_nuclei_cohort(
    out: Path, n_tiles: int = 14, size: int = 128, seed: int = 0
) -> list[NucleiTile]:
    """Write the synthetic nuclei tiles in the Data Science Bowl 2018 layout.

    Args:
        out: folder to write (created).
        n_tiles: tiles.
        size: side of a square tile in pixels (nuclei scale with it: about 9-18 pixels
            across at 128).
        seed: random seed; the same arguments give byte-identical files.

    Returns:
        one :class:`NucleiTile` per tile.

    Raises:
        ValueError: fewer than 1 tile or a tile smaller than 64 pixels.
    """
    if n_tiles < 1 or size < 64:
        raise ValueError("nuclei demo: needs >= 1 tile of >= 64 pixels")
    rng = np.random.default_rng(seed)
    tiles = []
    for index in range(n_tiles):
        name = hashlib.sha256(f"medcnn-nuclei/{seed}/{index}".encode()).hexdigest()[:16]
        labels, brightness = _nuclei_labels(rng, size)
        image = _render_nuclei(rng, labels, brightness)
        folder = out / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / "images" / f"{name}.png")
        ids = [i for i in range(1, int(labels.max()) + 1) if (labels == i).any()]
        for number, i in enumerate(ids, start=1):
            binary = np.where(labels == i, 255, 0).astype(np.uint8)
            Image.fromarray(binary).save(folder / "masks" / f"{number:03d}.png")
        tiles.append(NucleiTile(name, len(ids), len(touching_pairs(labels))))
    return tiles


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of instance ids whose pixels are 8-adjacent (2D labels)."""
    pairs: set[tuple[int, int]] = set()
    padded = np.pad(labels, 1)
    centre = padded[1:-1, 1:-1]
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
        other = padded[1 + dr : padded.shape[0] - 1 + dr, 1 + dc : padded.shape[1] - 1 + dc]
        hit = (centre > 0) & (other > 0) & (centre != other)
        for a, b in zip(centre[hit].tolist(), other[hit].tolist(), strict=True):
            pairs.add((min(a, b), max(a, b)))
    return pairs


def _nuclei_labels(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict[int, float]]:
    """A label image (row, column) of ellipses, later ones on top, and each one's brightness.

    A nucleus is rejected when it would hide more than half of one already drawn, so every
    mask keeps a recognisable shape.
    """
    scale = size / 128
    labels = np.zeros((size, size), dtype=np.int32)
    full_area: dict[int, int] = {}
    brightness: dict[int, float] = {}
    rows, cols = np.mgrid[:size, :size]
    target = int(rng.integers(18, 36) * scale**2)
    centres: list[tuple[float, float, float]] = []
    next_id = 1
    for _ in range(target * 8):
        if next_id > target:
            break
        a, b = rng.uniform(4.5, 9) * scale, rng.uniform(4.5, 9) * scale
        if centres and rng.random() < 0.7:
            # Against a drawn nucleus: touching, or overlapping a little.
            cr, cc, rad = centres[int(rng.integers(len(centres)))]
            angle = rng.uniform(0, 2 * np.pi)
            dist = (rad + (a + b) / 2) * rng.uniform(0.75, 1.0)
            r0, c0 = cr + dist * np.sin(angle), cc + dist * np.cos(angle)
        else:
            r0, c0 = rng.uniform(0, size), rng.uniform(0, size)
        phi = rng.uniform(0, np.pi)
        u = (cols - c0) * np.cos(phi) + (rows - r0) * np.sin(phi)
        v = -(cols - c0) * np.sin(phi) + (rows - r0) * np.cos(phi)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        if inside.sum() < 20 * scale**2:
            continue
        hidden = np.bincount(labels[inside], minlength=next_id)
        visible = np.bincount(labels.ravel(), minlength=next_id)
        if any(visible[i] - hidden[i] < full_area[i] // 2 for i in np.flatnonzero(hidden[1:]) + 1):
            continue
        labels[inside] = next_id
        full_area[next_id] = int(inside.sum())
        brightness[next_id] = float(rng.uniform(70, 220))
        centres.append((r0, c0, (a + b) / 2))
        next_id += 1
    return labels, brightness


def _render_nuclei(
    rng: np.random.Generator, labels: np.ndarray, brightness: dict[int, float]
) -> np.ndarray:
    """Fluorescence-like 8-bit grey image of the label image: texture, blur, shot noise."""
    size = labels.shape[0]
    texture = ndimage.gaussian_filter(rng.normal(0, 1, labels.shape), 1.5)
    texture = 1 + 0.18 * texture / (texture.std() + 1e-6)
    lookup = np.zeros(int(labels.max()) + 1, dtype=np.float64)
    for i, value in brightness.items():
        lookup[i] = value
    signal = lookup[labels] * texture
    # Brighter rims where nuclei meet would give the boundary away: a darker rim instead,
    # and chromatin dots inside.
    edge = labels != ndimage.grey_erosion(labels, size=(3, 3))
    signal[edge & (labels > 0)] *= 0.85
    dots = (rng.random(labels.shape) < 0.02) & (labels > 0)
    signal[dots] *= 1.3
    background = 10 + 6 * ndimage.gaussian_filter(rng.normal(0, 1, labels.shape), size / 8)
    image = ndimage.gaussian_filter(signal + background, 1.0)
    image = rng.poisson(np.clip(image, 0, None) / 2.0) * 2.0 + rng.normal(0, 2, labels.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
