"""MONAI transforms for projection radiographs.

Arrays are channel first, ``(1, i, j)`` with i along an image row (NIfTI order, as ingest
writes them); intensities are unitless after normalisation, 0 (air) to 1 (bone/metal).
MONOCHROME1 images arrive already inverted from ingest (:mod:`medcnn.io.dicom`), so bone is
bright for every image here.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
    SqueezeDimd,
    Transform,
)

KEY = "image"


class CLAHE(Transform):
    """Contrast-limited adaptive histogram equalisation of a ``(C, H, W)`` image in 0..1.

    CLAHE brings out structure in the mediastinum and behind the heart, where a global
    window leaves little contrast; the clip limit keeps it from amplifying noise in flat
    regions. scikit-image's ``equalize_adapthist`` underneath, channel by channel.

    Args:
        clip_limit: scikit-image's clip limit (0..1; higher gives more contrast).
        kernel_size: tile size in pixels; None takes 1/8 of each side (scikit-image's default).
    """

    def __init__(self, clip_limit: float = 0.01, kernel_size: int | None = None) -> None:
        self.clip_limit = clip_limit
        self.kernel_size = kernel_size

    def __call__(self, image: np.ndarray | torch.Tensor) -> np.ndarray:
        from skimage.exposure import equalize_adapthist

        array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
        # equalize_adapthist wants 0..1; the percentile scaling before it guarantees that
        # up to rounding, which the clip removes.
        array = np.clip(array.astype(np.float64), 0.0, 1.0)
        out = np.stack(
            [
                equalize_adapthist(
                    channel, kernel_size=self.kernel_size, clip_limit=self.clip_limit
                )
                for channel in array
            ]
        )
        return out.astype(np.float32)


class CLAHEd(MapTransform):
    """Dictionary version of :class:`CLAHE`."""

    def __init__(
        self,
        keys: KeysCollection,
        clip_limit: float = 0.01,
        kernel_size: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.clahe = CLAHE(clip_limit, kernel_size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.clahe(d[key])
        return d


def preprocess_transforms(plans: dict[str, Any]) -> Compose:
    """Load a 2D NIfTI radiograph and bring it to the network's input grid.

    The image is scaled so its longer side is ``plans['size']`` (aspect ratio kept: a chest
    squeezed into a square changes the cardiothoracic ratio), then zero-padded to a square.
    Percentile scaling makes 8, 12 and 16-bit sources alike (and ignores the few burned-in
    markers at the top of the range). With ``plans['clahe']`` true, CLAHE follows.

    Args:
        plans: the task's ``plans.json`` (keys ``size``, ``intensity``, optional ``clahe``
            and ``clahe_clip_limit``).

    Returns:
        Transform from ``{"image": path}`` to ``{"image": float32 array (1, size, size)}``.
    """
    size = int(plans["size"])
    intensity = plans["intensity"]
    # CLAHE before resizing: its tiles then see the anatomy at the source resolution.
    clahe = (
        [CLAHEd(keys=KEY, clip_limit=float(plans.get("clahe_clip_limit", 0.01)))]
        if plans.get("clahe")
        else []
    )
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
            *clahe,
            Resized(keys=KEY, spatial_size=size, size_mode="longest", mode="area"),
            SpatialPadd(keys=KEY, spatial_size=(size, size), mode="constant"),
            EnsureTyped(keys=KEY, dtype=np.float32, data_type="numpy", track_meta=False),
        ]
    )


def augment_transforms(size: int, flip: bool = False) -> Compose:
    """Random augmentation for training: small rotation, scaling, shift, contrast, brightness.

    Args:
        size: side of the (square) input in pixels; shifts are up to 6 % of it.
        flip: also flip left-right (along i) half the time. Off by default: the heart is on
            the left, and a flipped chest is not a chest that occurs (dextrocardia aside).

    Returns:
        Transform of ``{"image": float32 (1, size, size)}``, same shape out.
    """
    flips: Sequence[Any] = [RandFlipd(keys=KEY, prob=0.5, spatial_axis=0)] if flip else []
    return Compose(
        [
            *flips,
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
