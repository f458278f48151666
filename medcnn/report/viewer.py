"""The interactive slice viewer of a 3D image and its mask, for self-contained HTML reports.

The viewer is NiiVue (BSD-2-Clause, https://github.com/niivue/niivue), whose browser bundle
ships inside this package (``vendor/niivue/``, version and checksum in its README): a report
never downloads anything. The bundle goes into the page gzip-compressed and base64-encoded
(2.3 MB of JavaScript becomes 1.1 MB of text) and is unpacked by the browser itself
(``DecompressionStream``); the image and its mask go in as small ``.nii.gz`` files, base64
too, that NiiVue reads from memory.

Size is kept in check by resampling the volume to at most ``max_voxels`` voxels (the finest
axes coarsened first, towards a common spacing) and storing it as uint8 within the
report's display window (the scaling in the NIfTI header turns the bytes back into modality
values, HU for CT, to within one 255th of the window).
"""

from __future__ import annotations

import base64
import functools
import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from medcnn.report.thumbnail import display_window

VENDOR = Path(__file__).parent / "vendor" / "niivue"
#: The NiiVue release shipped in ``vendor/niivue`` (npm ``@niivue/niivue``).
NIIVUE_VERSION = "0.69.0"
#: At most this many voxels go into a report: 2**23, about 203 x 203 x 203 (8 MiB as uint8,
#: some 3.5 MB in the page for a CT: see bench/viewer_size.py).
MAX_VOXELS = 2**23


@functools.cache
def niivue_bundle() -> str:
    """NiiVue's UMD browser bundle, gzip-compressed and base64-encoded (made once a process).

    The bundle is vendored already compressed (``niivue.umd.js.gz``, gzip level 9, no
    mtime): the report embeds those bytes as they are.

    Raises:
        FileNotFoundError: the package was installed without its data files.
    """
    path = VENDOR / "niivue.umd.js.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: NiiVue's bundle is missing; reinstall medcnn")
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _nifti_gz(data: np.ndarray, affine: np.ndarray, slope: float, intercept: float) -> bytes:
    image = nib.Nifti1Image(data, affine)
    image.header.set_slope_inter(slope, intercept)
    image.header.set_xyzt_units("mm")
    # to_bytes gives a plain .nii; NiiVue reads the gzip form, as a .nii.gz file would be
    return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)


def _resample_grid(
    shape: Sequence[int], spacing: Sequence[float], max_voxels: int
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The zoom per axis (<= 1) and the new shape that fit ``max_voxels``.

    Only the axes finer than a common spacing ``s`` are coarsened (to ``s``): a CT of thin
    slices loses resolution along every axis alike, one of 5 mm slices keeps its slices and
    loses in-plane detail first. ``s`` is the smallest that fits, found by bisection.
    """
    shape = [int(n) for n in shape]
    spacing = [abs(float(d)) or 1.0 for d in spacing]
    if np.prod(shape, dtype=float) <= max_voxels:
        return tuple(1.0 for _ in shape), tuple(shape)

    def fit(s: float) -> list[int]:
        return [
            max(1, int(round(n * min(1.0, d / s)))) for n, d in zip(shape, spacing, strict=True)
        ]

    low, high = min(spacing), max(n * d for n, d in zip(shape, spacing, strict=True))
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (
            (middle, high) if np.prod(fit(middle), dtype=float) > max_voxels else (low, middle)
        )
    new = fit(high)
    return tuple(m / n for m, n in zip(new, shape, strict=True)), tuple(new)


def viewer_volumes(
    image_path: Path,
    mask_path: Path,
    sidecar: dict[str, Any] | None = None,
    *,
    percentiles: Sequence[float] = (0.5, 99.5),
    max_voxels: int = MAX_VOXELS,
) -> dict[str, Any]:
    """The image and its mask as base64 ``.nii.gz`` for the viewer, and what was done to them.

    Args:
        image_path: ingested 3D image ``(i, j, k)`` (a 4D file gives its first volume).
        mask_path: integer label map on the same grid.
        sidecar: the image's ingest sidecar (its DICOM window, when it has one).
        percentiles: display window from these percentiles when the sidecar has none.
        max_voxels: the most voxels kept; a larger volume is resampled (linear for the
            image, nearest for the mask, the same factor along every axis).

    Returns:
        ``{"image", "mask"}`` (base64 text), ``"shape"`` (as shown), ``"original_shape"``,
        ``"factor"`` (the smallest zoom of an axis, 1 when kept as is), ``"window"`` (low, high) and
        ``"bytes"`` (the base64 text of both, in bytes).

    Raises:
        ValueError: a file cannot be read, is not 3D, or the mask is on another grid.
    """
    image, mask = _read_pair(Path(image_path), Path(mask_path))
    data = np.asanyarray(image.dataobj).astype(np.float32)
    labels = np.rint(np.asanyarray(mask.dataobj)).astype(np.int16)
    while data.ndim > 3:
        data = data[..., 0]
    while labels.ndim > 3:
        labels = labels[..., 0]
    if data.ndim != 3 or data.shape[2] < 2:
        raise ValueError(f"{image_path}: the slice viewer needs a 3D image, not {data.shape}")
    low, high, _ = display_window(data, sidecar or {}, percentiles)
    zoom, shape = _resample_grid(data.shape, image.header.get_zooms()[:3], max_voxels)
    factor = min(zoom)
    affine = image.affine.copy()
    if factor < 1.0:
        data = ndimage.zoom(data, zoom, order=1, prefilter=False, grid_mode=True, mode="nearest")
        labels = ndimage.zoom(labels, zoom, order=0, grid_mode=True, mode="nearest")
        # the new voxels cover the same extent: scale the axes, shift the first centre
        scale = np.array([old / new for old, new in zip(image.shape[:3], data.shape, strict=True)])
        affine[:3, :3] = image.affine[:3, :3] * scale
        affine[:3, 3] = image.affine[:3, :3] @ ((scale - 1) / 2) + image.affine[:3, 3]
    scaled = np.clip((data - low) / (high - low), 0.0, 1.0)
    pixels = np.rint(scaled * 255).astype(np.uint8)
    slope = (high - low) / 255.0
    image_gz = _nifti_gz(pixels, affine, slope, low)
    mask_gz = _nifti_gz(np.clip(labels, 0, 255).astype(np.uint8), affine, 1.0, 0.0)
    encoded = {
        k: base64.b64encode(v).decode("ascii") for k, v in (("image", image_gz), ("mask", mask_gz))
    }
    return {
        **encoded,
        "focus": _focus(labels),
        "shape": list(pixels.shape),
        "original_shape": list(image.shape[:3]),
        "factor": factor,
        "window": (low, high),
        "labels": int(labels.max()),
        "bytes": len(encoded["image"]) + len(encoded["mask"]),
    }


def _focus(labels: np.ndarray) -> list[int] | None:
    """The voxel ``(i, j, k)`` at the centre of the largest lesion, where the viewer opens."""
    components, n = ndimage.label(labels > 0)
    if n == 0:
        return None
    largest = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
    centre = ndimage.center_of_mass(components == largest)
    return [int(round(c)) for c in centre]


def is_volume(path: Path) -> bool:
    """Whether a NIfTI file holds a 3D volume (more than one slice), from its header only."""
    try:
        shape = nib.load(str(path)).shape
    except Exception:  # unreadable: the overlay figure names the file and the problem
        return False
    return len(shape) >= 3 and shape[2] > 1


def _read_pair(image_path: Path, mask_path: Path) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    loaded = []
    for path, what in ((image_path, "image"), (mask_path, "label map")):
        try:
            loaded.append(nib.load(str(path)))
        except Exception as exc:  # nibabel raises several types for a broken file
            raise ValueError(f"{path}: cannot read {what}: {exc}") from exc
    image, mask = loaded
    if image.shape[:3] != mask.shape[:3] or not np.allclose(image.affine, mask.affine, atol=1e-3):
        raise ValueError(
            f"{mask_path}: label map (shape {mask.shape[:3]}) is not on the grid of "
            f"{image_path} (shape {image.shape[:3]})"
        )
    return image, mask
