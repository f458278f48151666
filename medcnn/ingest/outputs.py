"""Writing one converted image: NIfTI + sidecar (only when changed), its manifest row, and
the label-map checks (integer storage, grid against the images of its subject and study).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from medcnn.ingest.context import Context
from medcnn.io.files import sha256_file
from medcnn.io.nifti import jsonable, write_json, write_nifti

#: A label map has at most this many distinct values (background included).
MAX_LABEL_VALUES = 64


def label_like(data: np.ndarray) -> tuple[bool, str]:
    """Whether voxels look like a label map: whole non-negative numbers, few distinct values.

    Returns:
        (verdict, why not) - the second is "" when it is a label map.
    """
    values = np.asarray(data)
    if values.size == 0:
        return False, "empty"
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            return False, "non-integer values"
    if float(values.min()) < 0:
        return False, "negative values"
    distinct = np.unique(values)
    if len(distinct) > MAX_LABEL_VALUES:
        return False, f"{len(distinct)} distinct values"
    return True, ""


def as_labels(data: np.ndarray, warnings: list[str]) -> tuple[np.ndarray, Any]:
    """A label map as the smallest unsigned integer type that holds it (int32 if negative).

    Non-integer values (a mask resampled or saved as float) are rounded, with a warning.
    """
    values = np.asarray(data)
    if values.ndim == 5:  # colour label image: the largest value over the channels
        values = values.max(axis=-1)
    if values.ndim == 4 and values.shape[3] == 1:
        values = values[..., 0]
    if not np.issubdtype(values.dtype, np.integer):
        rounded = np.rint(np.nan_to_num(values))
        if not np.array_equal(rounded, values):
            warnings.append("label map had non-integer values: rounded to the nearest integer")
        values = rounded
    lo = float(values.min()) if values.size else 0.0
    hi = float(values.max()) if values.size else 0.0
    if lo < 0 or hi > np.iinfo(np.uint16).max:
        return values.astype(np.int32), np.int32
    if hi <= np.iinfo(np.uint8).max:
        return values.astype(np.uint8), np.uint8
    return values.astype(np.uint16), np.uint16


def check_affine(
    ctx: Context,
    subject: str,
    study: str,
    spatial: tuple[int, ...],
    affine: np.ndarray,
    warnings: list[str],
) -> None:
    """Warn when a label's affine differs from every same-shaped image of its subject/study.

    The label keeps its own affine (a header written by another tool may differ in the last
    digits); more than 0.001 mm at a corner of the grid is worth telling.
    """
    corners = np.array(
        [
            [i, j, k, 1.0]
            for i in (0, spatial[0] - 1)
            for j in (0, spatial[1] - 1)
            for k in (0, spatial[2] - 1)
        ]
    ).T
    gaps = [
        float(np.abs((affine - other) @ corners).max())
        for shape, other in ctx.grids.get((subject, study), [])
        if tuple(shape) == tuple(int(s) for s in spatial)
    ]
    if gaps and min(gaps) > 1e-3:
        warnings.append(
            f"label grid is {min(gaps):.3g} mm away from the image of the same shape"
            " (affines differ; the label keeps its own)"
        )


def grid_problem(ctx: Context, subject: str, study: str, spatial: tuple[int, ...]) -> str:
    """Why a label of this shape cannot label an image of its subject/study ("" if it can)."""
    wanted = "x".join(str(int(s)) for s in spatial)
    shapes = sorted(
        {
            "x".join(row["shape"].split("x")[:3])
            for row in ctx.rows
            if row["subject"] == subject and row["study"] == study and row["role"] == "image"
        }
    )
    if wanted in shapes:
        return ""
    if not shapes:
        return f"no image of the same subject and study to label (label shape {wanted})"
    return (
        f"label shape {wanted} matches no image of the same subject and study "
        f"(image shapes: {', '.join(shapes)})"
    )


def combined_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def write_outputs(
    ctx: Context,
    subject: str,
    study: str,
    series: str,
    data: np.ndarray,
    affine: np.ndarray,
    sidecar: dict[str, Any],
    dtype: Any,
) -> dict[str, Any]:
    nii = ctx.out / subject / f"{series}.nii.gz"
    sidecar_path = ctx.out / subject / f"{series}.json"
    colour = data.ndim == 5
    volumes = int(data.shape[3]) if data.ndim >= 4 else 1
    # Rewrite only when something changed, so unchanged subjects keep their timestamps and
    # Snakemake re-runs downstream jobs for new or changed scans only.
    previous = read_json(sidecar_path)
    if previous != normalise(sidecar) or not nii.exists():
        tr = sidecar.get("RepetitionTime") if volumes > 1 else None
        write_nifti(nii, data, affine, dtype=dtype, repetition_time=tr)
        write_json(sidecar_path, sidecar)
    spatial = data.shape[:3]
    if sidecar.get("Role", "image") == "image":
        ctx.grids[(subject, study)].append((tuple(int(s) for s in spatial), np.asarray(affine)))
    spacing = [abs(float(v)) for v in (affine[:3, :3] ** 2).sum(axis=0) ** 0.5]
    shape = list(spatial) + ([volumes] if volumes > 1 else [])
    return {
        "subject": subject,
        "study": study,
        "series": series,
        "modality": sidecar.get("Modality", ""),
        "dims": 2 if spatial[2] == 1 else 3,
        "shape": "x".join(str(s) for s in shape),
        "spacing": "x".join(f"{s:.4g}" for s in spacing),
        "photometric": sidecar.get("PhotometricInterpretation", ""),
        "view": sidecar.get("ViewPosition", ""),
        "path": str(nii.relative_to(ctx.results)),
        "sidecar": str(sidecar_path.relative_to(ctx.results)),
        "warnings": ";".join(sidecar.get("Warnings", [])),
        "volumes": volumes,
        "channels": 3 if colour else 1,
        "role": sidecar.get("Role", "image"),
        "description": sidecar.get("SeriesDescription", ""),
    }


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def normalise(payload: dict[str, Any]) -> Any:
    """The payload as it reads back from JSON (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(payload, default=jsonable))
