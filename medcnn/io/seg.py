"""Write a label map predicted on a DICOM-derived volume as a DICOM Segmentation (highdicom).

Ingest keeps only the NIfTI and its sidecar, not the source DICOM files, so the source image
datasets that a Segmentation references are rebuilt here from the sidecar: one header-only
dataset per slice k with the sidecar's ``SliceSOPInstanceUIDs[k]``, ``SOPClassUID``, study,
series and frame-of-reference UIDs, and the geometry of slice k computed from the NIfTI affine
(NIfTI world is RAS+, DICOM patient space is LPS: x and y change sign).

The patient module carries the subject's pseudonym only (as PatientID and PatientName): no
name, ID, birth date, sex or accession number of the patient is written, whatever the source
held. A PACS viewer therefore files the SEG under the pseudonym; the mapping back to the real
patient stays with whoever holds ``deid.mapping``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

from medcnn import __version__

__all__ = ["source_datasets", "write_dicom_seg"]

_LPS = np.diag([-1.0, -1.0, 1.0])


def _slice_geometry(affine: np.ndarray, k: int) -> tuple[list[float], list[float], list[float]]:
    """(ImagePositionPatient, ImageOrientationPatient, PixelSpacing) of NIfTI slice ``k``.

    NIfTI i runs along a DICOM row (the column index) and j down a column (the row index),
    so the row direction is the affine's first column and the column direction its second.
    """
    position = _LPS @ (affine[:3, :3] @ np.array([0.0, 0.0, float(k)]) + affine[:3, 3])
    step_i, step_j = _LPS @ affine[:3, 0], _LPS @ affine[:3, 1]
    spacing_i, spacing_j = float(np.linalg.norm(step_i)), float(np.linalg.norm(step_j))
    orientation = [*(step_i / spacing_i), *(step_j / spacing_j)]
    # PixelSpacing is (row spacing = distance between rows, column spacing).
    return (
        [round(float(v), 6) for v in position],
        [round(float(v), 8) for v in orientation],
        [round(spacing_j, 6), round(spacing_i, 6)],
    )


def source_datasets(label_img: nib.Nifti1Image, sidecar: dict[str, Any]) -> list[Dataset]:
    """Header-only stand-ins of the source slices, one per NIfTI slice k.

    Args:
        label_img: an image on the ingest grid of the source volume (its affine and shape).
        sidecar: the source volume's ingest sidecar.

    Returns:
        datasets in NIfTI k order, with the source UIDs, geometry from the affine, the
        pseudonymous patient module and ``Rows``/``Columns`` (no pixel data).

    Raises:
        ValueError: the sidecar lacks what a Segmentation must reference (it was not made
            from single-frame DICOM slices, or by an older ingest), or the image does not
            have one slice per source SOP instance.
    """
    needed = (
        "SliceSOPInstanceUIDs",
        "SOPClassUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
    )
    missing = [k for k in needed if not sidecar.get(k)]
    if missing:
        raise ValueError(
            f"sidecar of {sidecar.get('Subject', '?')}/{sidecar.get('Series', '?')} lacks "
            f"{', '.join(missing)}: no DICOM SEG can reference its source (not single-frame "
            "DICOM slices, resampled, or ingested by an older medcnn)"
        )
    shape = label_img.shape
    uids = list(sidecar["SliceSOPInstanceUIDs"])
    n_slices = shape[2] if len(shape) > 2 else 1
    if n_slices != len(uids):
        raise ValueError(
            f"label image has {n_slices} slices but its source "
            f"{sidecar.get('Subject', '?')}/{sidecar.get('Series', '?')} has {len(uids)}"
        )
    affine = np.asarray(label_img.affine, dtype=float)
    pseudonym = str(sidecar.get("Subject", "anonymous"))
    datasets = []
    for k, sop_uid in enumerate(uids):
        position, orientation, spacing = _slice_geometry(affine, k)
        ds = Dataset()
        ds.SOPClassUID = sidecar["SOPClassUID"]
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = sidecar["StudyInstanceUID"]
        ds.SeriesInstanceUID = sidecar["SeriesInstanceUID"]
        ds.FrameOfReferenceUID = sidecar["FrameOfReferenceUID"]
        ds.Modality = sidecar.get("Modality", "OT")
        ds.PatientName = f"{pseudonym}^"  # family name only (a single-component PN)
        ds.PatientID = pseudonym
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.AccessionNumber = ""
        ds.StudyID = ""
        ds.StudyDate = sidecar.get("StudyDate", "")  # present only when deid.dates shifts
        ds.StudyTime = ""
        ds.ReferringPhysicianName = ""
        ds.Rows, ds.Columns = int(shape[1]), int(shape[0])
        ds.ImagePositionPatient = position
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = spacing
        ds.SliceThickness = float(sidecar.get("SliceThickness") or np.linalg.norm(affine[:3, 2]))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        datasets.append(ds)
    return datasets


def _property_codes(name: str) -> tuple[Any, Any]:
    """(segmented property category, type) codes of a segment name (SNOMED CT)."""
    from pydicom.sr.codedict import codes

    lowered = name.lower()
    if any(w in lowered for w in ("lesion", "tumour", "tumor", "nodule", "metast")):
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion
    return codes.SCT.Tissue, codes.SCT.Tissue


def write_dicom_seg(
    label_img: nib.Nifti1Image,
    sidecar: dict[str, Any],
    out_path: Path,
    segment_names: Sequence[str],
    series_number: int = 9901,
    series_description: str = "medcnn segmentation",
) -> Path:
    """Write ``label_img`` (0 background, 1..N the segments) as a binary DICOM Segmentation.

    Args:
        label_img: integer label map on the source volume's ingest grid (the NIfTI that
            ingest wrote for it: same shape and affine), ``(i, j, k)`` or ``(i, j, k, 1)``.
        sidecar: that volume's ingest sidecar (see :func:`source_datasets`).
        out_path: the ``.dcm`` to write (its folder is created).
        segment_names: name of label 1, 2, ... (one segment each); labels beyond the list
            are an error, listed labels absent from the image still get a segment.
        series_number: SeriesNumber of the SEG.
        series_description: SeriesDescription of the SEG.

    Returns:
        ``out_path``. Frames without any segment pixel are left out; each frame references
        the source slice it lies on (and the UIDs are derived from the source series and the
        label content, so the same prediction gives the same SEG UIDs).

    Raises:
        ValueError: missing source references in the sidecar, a label image that is not
            on the source grid, or label values without a segment name.
    """
    import highdicom as hd

    labels = _label_volume(label_img, out_path.name, len(segment_names))
    sources = source_datasets(label_img, sidecar)
    # (i, j, k) -> (k, rows, columns): frame k on source slice k.
    frames = np.ascontiguousarray(labels.transpose(2, 1, 0))
    descriptions = _segment_descriptions(segment_names)
    content = hashlib.sha256(frames.tobytes() + "|".join(segment_names).encode()).hexdigest()
    entropy = [sidecar["SeriesInstanceUID"], content, "medcnn-seg"]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(PYDICOM_ROOT_UID, [*entropy, "series"]),
        series_number=series_number,
        sop_instance_uid=generate_uid(PYDICOM_ROOT_UID, [*entropy, "sop"]),
        instance_number=1,
        manufacturer="medcnn",
        manufacturer_model_name="medcnn",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    seg.save_as(tmp)
    tmp.replace(out_path)
    return out_path


def _label_volume(label_img: nib.Nifti1Image, name: str, n_segments: int) -> np.ndarray:
    """The label image as a 3D uint16 array, checked: integer, non-negative, no label beyond
    the ``n_segments`` named ones (``name``: the file, for the messages)."""
    data = np.asarray(label_img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{name}: label image of shape {data.shape} is not 3D")
    if not np.array_equal(data, np.round(data)) or data.min() < 0:
        raise ValueError(f"{name}: label image has non-integer or negative values")
    labels = data.astype(np.uint16)
    if int(labels.max()) > n_segments:
        raise ValueError(
            f"{name}: label {int(labels.max())} has no segment name ({n_segments} given)"
        )
    return labels


def _segment_descriptions(segment_names: Sequence[str]) -> list[Any]:
    """One highdicom ``SegmentDescription`` per name (segment 1, 2, ...), made by medcnn's
    automatic algorithm."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="medcnn",
        family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
    )
    descriptions = []
    for number, name in enumerate(segment_names, start=1):
        category, kind = _property_codes(name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=str(name)[:64],
                segmented_property_category=category,
                segmented_property_type=kind,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    return descriptions
