"""Reading segmentation cases and moving them between voxel grids.

Axis conventions. Arrays are channel first. A 3D volume is reoriented to the closest canonical
RAS+ voxel order (axis permutations and flips only, so an oblique acquisition stays oblique,
nothing is interpolated), then resampled to the target spacing. A 2D image keeps the ingest
order ``(i, j)`` (i along an image row): a tile has no patient axes worth reorienting to, and
a 2D network does not care. The mapping back
(:func:`medcnn.inference.segmentation.to_original_grid`) uses the ``meta`` dictionary that
:func:`medcnn.transforms.segmentation.preprocess_case` returns.

Resampling uses voxel *centres* with the field of view kept: new voxel ``n`` lies at old
voxel ``(n + 0.5) * f - 0.5`` with ``f = old_size / new_size`` per axis, which is exactly what
``torch.nn.functional.interpolate`` does with ``align_corners=False`` (``nearest-exact`` for
labels); the preprocessed affine says the same in world space.

Ingest layouts read here (see :mod:`medcnn.io.nifti`, :mod:`medcnn.io.image2d`): greyscale 2D
``(i, j, 1)``, RGB 2D ``(i, j, 1, 1, 3)`` (NIfTI vector), 3D ``(i, j, k)``, and a 4D
``(i, j, k, t)`` whose ``t`` are taken as channels. Several files of one case (FLAIR + T1) are
channels too and must share a grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medcnn.io.rgb import as_vector


class SegmentationInputError(ValueError):
    """An image or label file that cannot be used (layout, grid mismatch, no data)."""


def case_paths(image_path: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(image_path, (str, Path)):
        return [Path(image_path)]
    return [Path(p) for p in image_path]


def load_channels(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """One ingest NIfTI as channel-first voxels.

    Returns:
        (float32 ``(C, i, j)`` for a 2D image or ``(C, i, j, k)`` for a volume, the file's 4x4
        affine, spatial dimensions 2 or 3). A 2D image is one whose third axis has one voxel.

    Raises:
        SegmentationInputError: unreadable file or an unsupported layout.
    """
    try:
        img = nib.load(path)
        data = as_vector(np.asanyarray(img.dataobj))  # RGB24 (dcm2niix colour) as vectors
    except Exception as exc:  # nibabel raises many types for damaged files
        raise SegmentationInputError(f"{path}: not a readable NIfTI file: {exc}") from exc
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 5:  # (i, j, k, t, c) vector image: RGB with t = 1
        if data.shape[3] != 1:
            raise SegmentationInputError(f"{path}: vector image with {data.shape[3]} time points")
        channels = np.moveaxis(data[:, :, :, 0, :], -1, 0)
    elif data.ndim == 4:
        channels = np.moveaxis(data, -1, 0)
    elif data.ndim == 3:
        channels = data[None]
    else:
        raise SegmentationInputError(f"{path}: unsupported voxel layout {data.shape}")
    dims = 2 if channels.shape[3] == 1 else 3
    if dims == 2:
        channels = channels[..., 0]
    return np.asarray(channels, dtype=np.float32), np.asarray(img.affine, dtype=np.float64), dims


def load_label(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """An integer label map as ``(i, j)`` or ``(i, j, k)`` int64, its affine and dimensions.

    Raises:
        SegmentationInputError: unreadable, multi-channel, or non-integer values.
    """
    channels, affine, dims = load_channels(path)
    if channels.shape[0] != 1:
        raise SegmentationInputError(f"{path}: a label map must have one channel")
    label = channels[0]
    if not np.array_equal(label, np.round(label)) or label.min() < 0:
        raise SegmentationInputError(f"{path}: label values must be non-negative integers")
    return label.astype(np.int64), affine, dims


def spacing_of(affine: np.ndarray, dims: int) -> list[float]:
    """Voxel size along each array axis in mm (the affine's column norms)."""
    return [float(np.linalg.norm(affine[:3, a])) for a in range(dims)]


def canonical_orientation(affine: np.ndarray, dims: int) -> np.ndarray:
    """nibabel orientation ``(dims, 2)`` taking the array to the closest RAS+ voxel order.

    2D images keep their order (identity): see the module docstring.
    """
    if dims == 2:
        return np.array([[0, 1], [1, 1]], dtype=float)
    return nib.orientations.io_orientation(affine)


def reorient(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Apply an orientation to every channel of ``(C, *spatial)``."""
    return np.stack([nib.orientations.apply_orientation(c, ornt) for c in array])


def reorient_affine(affine: np.ndarray, ornt: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    dims = len(shape)
    if dims == 2:
        return affine.copy()
    return affine @ nib.orientations.inv_ornt_aff(ornt, tuple(shape))


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]):
    """Grid size at ``target`` spacing covering the same field of view (at least 1 voxel)."""
    return [max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target, strict=True)]


def resample(array: np.ndarray, shape: Sequence[int], mode: str) -> np.ndarray:
    """Resample channel-first ``(C, *spatial)`` onto ``shape`` (voxel centres, same extent).

    Args:
        array: ``(C, *spatial)``; labels as integers, images as float.
        shape: new spatial size.
        mode: ``linear`` (images, probabilities) or ``nearest`` (labels).
    """
    if tuple(array.shape[1:]) == tuple(shape):
        return array
    tensor = torch.as_tensor(np.ascontiguousarray(array))[None]
    if mode == "nearest":
        out = torch.nn.functional.interpolate(
            tensor.float(), size=tuple(shape), mode="nearest-exact"
        )
        return out[0].numpy().astype(array.dtype)
    kind = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(shape)]
    out = torch.nn.functional.interpolate(
        tensor.float(), size=tuple(shape), mode=kind, align_corners=False
    )
    return out[0].numpy().astype(np.float32)


def resampled_affine(affine: np.ndarray, old: Sequence[int], new: Sequence[int]) -> np.ndarray:
    """The 4x4 affine of the grid :func:`resample` makes (2D: the first two axes scaled)."""
    scale = np.eye(4)
    for a, (n_old, n_new) in enumerate(zip(old, new, strict=True)):
        f = n_old / n_new
        scale[a, a] = f
        scale[a, 3] = 0.5 * f - 0.5
    return affine @ scale


def read_case(case: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """Image channels, affine, dims, label (or None) of one case, in file voxel order."""
    paths = case_paths(case["image"])
    arrays, affine, dims = [], None, None
    for path in paths:
        channels, aff, d = load_channels(path)
        if affine is not None and (
            channels.shape[1:] != arrays[0].shape[1:] or not np.allclose(aff, affine, atol=1e-3)
        ):
            raise SegmentationInputError(
                f"{path}: not on the grid of {paths[0]} (channels of a case must share it)"
            )
        arrays.append(channels)
        affine, dims = aff, d
    image = np.concatenate(arrays)
    label = None
    if case.get("label"):
        label, laff, _ = load_label(Path(case["label"]))
        if label.shape != image.shape[1:] or not np.allclose(laff, affine, atol=1e-3):
            raise SegmentationInputError(
                f"{case['label']}: label grid {label.shape} does not match image "
                f"{paths[0]} {image.shape[1:]}"
            )
    return image, affine, int(dims), label
