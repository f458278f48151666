"""MONAI dictionary transforms for projection radiographs.

Arrays are channel first, ``(1, i, j)`` with i along an image row (NIfTI order, as ingest
writes them); intensities are unitless after normalisation, 0 (air) to 1 (bone/metal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    RandAdjustContrastd,
    RandAffined,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
    SqueezeDimd,
)

KEY = "image"


def preprocess_transforms(plans: dict[str, Any]) -> Compose:
    """Load a 2D NIfTI radiograph and bring it to the network's input grid.

    The image is scaled so its longer side is ``plans['size']`` (aspect ratio kept: a chest
    squeezed into a square changes the cardiothoracic ratio), then zero-padded to a square.
    Percentile scaling makes 8, 12 and 16-bit sources alike.

    Args:
        plans: the task's ``plans.json`` (keys ``size``, ``intensity``).

    Returns:
        Transform from ``{"image": path}`` to ``{"image": float32 array (1, size, size)}``.
    """
    size = int(plans["size"])
    intensity = plans["intensity"]
    return Compose(
        [
            LoadImaged(keys=KEY, reader="NibabelReader", image_only=True),
            EnsureChannelFirstd(keys=KEY, channel_dim="no_channel"),
            SqueezeDimd(keys=KEY, dim=3),  # (1, i, j, 1) -> (1, i, j)
            ScaleIntensityRangePercentilesd(
                keys=KEY,
                lower=intensity["lower_percentile"],
                upper=intensity["upper_percentile"],
                b_min=0.0,
                b_max=1.0,
                clip=True,
            ),
            Resized(keys=KEY, spatial_size=size, size_mode="longest", mode="area"),
            SpatialPadd(keys=KEY, spatial_size=(size, size), mode="constant"),
            EnsureTyped(keys=KEY, dtype=np.float32, data_type="numpy", track_meta=False),
        ]
    )


def augment_transforms(size: int) -> Compose:
    """Random augmentation for training: small rotation, scaling, shift, contrast, brightness.

    No left-right flip: the heart is on the left, and a flipped chest is not a chest that
    occurs (dextrocardia aside).
    """
    return Compose(
        [
            RandAffined(
                keys=KEY,
                prob=0.8,
                rotate_range=np.deg2rad(10.0),
                scale_range=0.1,
                translate_range=0.06 * size,
                mode="bilinear",
                padding_mode="zeros",
            ),
            RandAdjustContrastd(keys=KEY, prob=0.5, gamma=(0.8, 1.25)),
            RandScaleIntensityd(keys=KEY, prob=0.5, factors=0.1),
            RandShiftIntensityd(keys=KEY, prob=0.5, offsets=0.05),
            EnsureTyped(keys=KEY, dtype=np.float32, track_meta=False),
        ]
    )
