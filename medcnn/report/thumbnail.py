"""Thumbnails of ingested images with the display window a radiologist would use.

The DICOM's own window (WindowCenter/WindowWidth, chosen by the modality or the technologist)
is used when the sidecar has one; otherwise robust percentiles of the image, so one hot pixel
or a black border does not wash the picture out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medcnn.io.rgb import as_vector


def display_window(
    data: np.ndarray, sidecar: dict[str, Any], percentiles: Sequence[float] = (0.5, 99.5)
) -> tuple[float, float, str]:
    """The display range ``(low, high)`` of an image and where it came from.

    Args:
        data: the ingested image, modality values (after RescaleSlope/Intercept, and with
            MONOCHROME1 inverted so higher is brighter).
        sidecar: its ingest sidecar (``WindowCenter``, ``WindowWidth`` as lists or null;
            ``PhotometricInterpretation``, ``BitsStored``, ``RescaleSlope``,
            ``RescaleIntercept``).
        percentiles: fallback range in percent.

    Returns:
        ``(low, high, source)``, source ``"DICOM window"`` or ``"percentiles p-q"``.
    """
    centers, widths = sidecar.get("WindowCenter"), sidecar.get("WindowWidth")
    # one value or several (DICOM VM 1-n): the first window is the primary one
    centers = [centers] if isinstance(centers, (int, float)) else centers
    widths = [widths] if isinstance(widths, (int, float)) else widths
    if centers and widths and float(widths[0]) > 0:
        center, width = float(centers[0]), float(widths[0])
        if sidecar.get("PhotometricInterpretation") == "MONOCHROME1":
            # The window was set on the uninverted values; ingest mirrored them within the
            # stored range, so mirror the centre the same way (unsigned pixels assumed).
            slope = float(sidecar.get("RescaleSlope", 1) or 1)
            intercept = float(sidecar.get("RescaleIntercept", 0) or 0)
            top = (2 ** int(sidecar.get("BitsStored", 16) or 16) - 1) * slope + intercept
            center = intercept + top - center
        return center - width / 2, center + width / 2, "DICOM window"
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0, 1.0, "empty image"
    low, high = np.percentile(finite, percentiles)
    if high <= low:
        high = low + 1.0
    return float(low), float(high), f"percentiles {percentiles[0]:g}-{percentiles[1]:g}"


def windowed_slice(
    nifti: Path, sidecar: dict[str, Any], percentiles: Sequence[float] = (0.5, 99.5)
) -> tuple[np.ndarray, str]:
    """The image (2D) or its middle ``k`` slice (3D) as ``(i, j)`` in 0..1, and the window used.

    Raises:
        ValueError: the file cannot be read as an image.
    """
    try:
        data = as_vector(np.asanyarray(nib.load(str(nifti)).dataobj)).astype(np.float32)
    except Exception as exc:  # nibabel raises several types for a broken file
        raise ValueError(f"{nifti}: cannot read image: {exc}") from exc
    while data.ndim > 3:
        data = data[..., 0]
    if data.ndim == 3:
        data = data[:, :, data.shape[2] // 2]
    low, high, source = display_window(data, sidecar, percentiles)
    scaled = np.clip((data - low) / (high - low), 0.0, 1.0)
    return scaled, f"{source} [{low:.6g}, {high:.6g}]"
