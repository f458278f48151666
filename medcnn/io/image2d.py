"""Read 2D image files (PNG, JPEG, TIFF, BMP): radiographs from public datasets, histology tiles.

Axis order of the returned voxels is NIfTI's, as for DICOM: ``(i, j, 1)`` = (column, row,
slice) for greyscale and ``(i, j, 1, 1, 3)`` for RGB (NIfTI's vector layout). The files carry
no patient geometry, so the affine is the one a radiograph without ImageOrientationPatient
gets: i along patient left, j towards the feet, 1 mm per pixel unless told otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medcnn.io.errors import DicomReadError
from medcnn.io.files import open_regular
from medcnn.io.geometry import LPS_TO_RAS


class ImageReadError(DicomReadError):
    """A 2D image file that cannot be read; the message is fit for ``quarantine.tsv``."""


def _check_size(img: Any, max_pixel_bytes: int) -> None:
    """Refuse an image whose header declares more than ``max_pixel_bytes`` (or nothing)."""
    declared = img.width * img.height * max(1, len(img.getbands())) * 2
    if declared > max_pixel_bytes or min(img.width, img.height) <= 0:
        raise ImageReadError(
            f"declares {img.width} x {img.height} pixels ({declared:,} bytes), over "
            f"ingest.limits.max_pixel_bytes ({max_pixel_bytes:,}) or empty"
        )


def read_image_file(
    path: Path, spacing_mm: float = 1.0, max_pixel_bytes: int = 1 << 30
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[str]]:
    """Decode a 2D image file.

    Args:
        path: the file.
        spacing_mm: pixel size to record (files have no calibrated spacing).
        max_pixel_bytes: largest declared width x height x bands x bytes decoded (checked
            from the header, before decoding).

    Returns:
        (voxels, 4x4 RAS+ affine, sidecar facts, warnings). Greyscale keeps its integer type
        (8 or 16 bit); colour becomes 8-bit RGB; an alpha channel is dropped (with a warning
        when it is not fully opaque); palette images are expanded to RGB.

    Raises:
        ImageReadError: unreadable or truncated file, or an unsupported layout.
    """
    from PIL import Image

    warnings: list[str] = []
    try:
        with open_regular(path) as fh, Image.open(fh) as img:
            _check_size(img, max_pixel_bytes)
            img.load()
            mode = img.mode
            n_frames = getattr(img, "n_frames", 1)
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif mode in ("LA", "PA"):
                img = img.convert("RGBA")
            elif mode == "CMYK" or mode == "YCbCr":
                img = img.convert("RGB")
            elif mode == "1":
                img = img.convert("L")
            array = np.asarray(img)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types for damaged files (and bomb errors)
        raise ImageReadError(f"not a readable image: {type(exc).__name__}: {exc}") from exc
    if n_frames > 1:
        warnings.append(f"{n_frames} pages/frames: only the first was read")
    if array.ndim == 3 and array.shape[2] == 4:
        if array[..., 3].min() < 255:
            warnings.append("alpha channel dropped (image not fully opaque)")
        array = array[..., :3]
    if array.ndim == 3 and array.shape[2] == 3:
        if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(
            array[..., 0], array[..., 2]
        ):
            # Greyscale saved as RGB (common for radiographs exported as PNG/JPEG).
            array = array[..., 0]
        else:
            array = array.astype(np.uint8) if array.dtype != np.uint8 else array
    if array.ndim == 2:
        data = np.ascontiguousarray(array.T[:, :, None])
        photometric = "MONOCHROME2"
    elif array.ndim == 3 and array.shape[2] == 3:
        data = np.ascontiguousarray(np.swapaxes(array, 0, 1)[:, :, None, None, :])
        photometric = "RGB"
    else:
        raise ImageReadError(f"unsupported image layout {mode} {array.shape}")
    affine = LPS_TO_RAS @ np.diag([spacing_mm, spacing_mm, 1.0, 1.0])
    meta = {
        "Modality": "OT",
        "PhotometricInterpretation": photometric,
        "SourceFormat": path.suffix.lower().lstrip("."),
        "ImageMode": mode,
        "BitsStored": int(array.dtype.itemsize * 8),
        "PixelSpacing": [spacing_mm, spacing_mm],
        "PixelSpacingSource": "none",
        "Rows": int(array.shape[0]),
        "Columns": int(array.shape[1]),
    }
    return data, affine, meta, warnings
