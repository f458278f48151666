"""Preprocessing and augmentation of segmentation cases (2D/3D semantic, 2D nuclei instances).

:func:`preprocess_case` applies a task's plans (:mod:`medcnn.planning.segmentation`) to one
case: canonical voxel order, the target spacing (:mod:`medcnn.transforms.spatial`) and the
plans' intensity normalisation. The MONAI dictionary transforms below make the training and
validation chains (patch sampling, spatial and intensity augmentation).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    DeleteItemsd,
    EnsureTyped,
    FgBgToIndicesd,
    MapTransform,
    Rand2DElasticd,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandomizableTransform,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
    Transform,
)

from medcnn.postprocess.instances import median_diameter, target_from_instances
from medcnn.transforms.nuclei import estimate_diameter, nuclei_grey, scale_factor
from medcnn.transforms.spatial import (
    SegmentationInputError,
    canonical_orientation,
    case_paths,
    read_case,
    reorient,
    reorient_affine,
    resample,
    resampled_affine,
    resampled_shape,
    spacing_of,
)
from medcnn.transforms.symmetry import quarter_turns

IMAGE, LABEL = "image", "label"

#: Classes of an instance task's training target, made from the instance map.
INSTANCE_CLASSES = ["background", "interior", "boundary"]
#: The fourth class of an instance task with ``touching_class``.
TOUCHING_CLASS = "touching"


def instance_classes(touching: bool) -> list[str]:
    """The classes an instance task's network learns (see :mod:`medcnn.postprocess.instances`)."""
    return [*INSTANCE_CLASSES, *([TOUCHING_CLASS] if touching else [])]


# --------------------------------------------------------------------------------------------
# One case


def normalise(image: np.ndarray, normalisation: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
    """Intensity normalisation of ``(C, *spatial)`` float32 by the plans' scheme.

    - ``ct``: clip to the cohort's foreground 0.5/99.5 percentiles, then z-score with the
      cohort's foreground mean/std (per channel).
    - ``mr``: z-score inside the non-zero voxels of each channel, background set to 0 (skull
      stripped MR has exact zeros outside the head: they are not tissue, so they must not
      drag the statistics).
    - ``mr_robust``: as ``mr`` with the median and the interquartile range (divided by 1.349,
      the IQR of a unit normal) for mean and SD: a large bright lesion then does not pull the
      statistics towards itself (with the plain SD a 170 mL tumour in a 1.3 L brain makes its
      own edema look darker than a small tumour's).
    - ``rgb`` / ``zscore``: z-score of each channel over the image (stain and exposure differ
      from slide to slide, so per-image statistics).

    Returns:
        (normalised image, ``{"mean": [...], "std": [...]}`` used per channel).
    """
    scheme = normalisation["scheme"]
    out = np.empty_like(image, dtype=np.float32)
    means, stds = [], []
    for c, channel in enumerate(image):
        channel = channel.astype(np.float32)
        if scheme == "ct":
            channel = np.clip(channel, normalisation["lower"][c], normalisation["upper"][c])
            mean, std = normalisation["mean"][c], normalisation["std"][c]
            out[c] = (channel - mean) / std
        elif scheme in ("mr", "mr_robust"):
            mask = channel != 0
            values = channel[mask] if mask.any() else channel.reshape(-1)
            if scheme == "mr":
                centre, spread = values.mean(), values.std()
            else:
                q25, centre, q75 = np.percentile(values, [25, 50, 75])
                spread = (q75 - q25) / 1.349
            mean, std = float(centre), float(max(spread, 1e-8))
            out[c] = np.where(mask, (channel - mean) / std, 0.0)
        elif scheme in ("rgb", "zscore"):
            mean, std = float(channel.mean()), float(max(channel.std(), 1e-8))
            out[c] = (channel - mean) / std
        else:
            raise ValueError(f"unknown normalisation scheme {scheme!r}")
        means.append(float(mean))
        stds.append(float(std))
    return out, {"mean": means, "std": stds}


def preprocess_case(
    image_path: str | Path | Sequence[str | Path],
    label_path: str | Path | None,
    plans: Mapping[str, Any],
    *,
    diameter: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """One case to the network's grid: canonical order, target spacing, normalised.

    Instance plans with ``normalisation`` ``nuclei`` reduce the image to one grey channel with
    nuclei bright (:func:`medcnn.transforms.nuclei.nuclei_grey`); with a
    ``rescale.nucleus_diameter`` the image is also resized so that its typical nucleus is
    that many pixels across: its diameter is ``diameter`` when given, else the median of the
    label's instances, else :func:`~medcnn.transforms.nuclei.estimate_diameter` of the image.
    The instance target is made on the resized grid (from the instances resized nearest), so
    the boundary band is one pixel there.

    Args:
        image_path: the ingest NIfTI, or one per channel (same grid).
        label_path: its label map (role ``mask`` or ``instances``), or None.
        plans: from :func:`make_seg_plans`.
        diameter: instance plans with rescaling: the image's typical nucleus diameter in
            pixels (e.g. measured on a first prediction).

    Returns:
        (float32 ``(C, *spatial)``; uint8 ``(1, *spatial)`` with class indices, for an
        instance task the 3- or 4-class target (the plans' ``classes``), or None; ``meta``:
        JSON-able dict with ``original_shape``/``original_affine`` (the ingest file's spatial grid),
        ``orientation``, ``canonical_shape``, ``shape`` and ``affine`` (preprocessed grid),
        ``spacing``, ``intensity`` (statistics used)).

    Raises:
        SegmentationInputError: unreadable files, mismatched grids, wrong channel count.
    """
    case = {"image": image_path, "label": label_path}
    image, affine, dims, label = read_case(case)
    if dims != plans["dims"]:
        raise SegmentationInputError(
            f"{case_paths(image_path)[0]}: {dims}D image for a {plans['dims']}D task"
        )
    n_channels = int(plans["n_channels"])
    scheme = plans["normalisation"]["scheme"]
    nuclei_stats: dict[str, Any] = {}
    if scheme == "nuclei":
        if dims != 2:
            raise SegmentationInputError(f"{case_paths(image_path)[0]}: nuclei images are 2D")
        image, nuclei_stats = nuclei_grey(image)
    if image.shape[0] == 1 and n_channels == 3:
        image = np.repeat(image, 3, axis=0)  # a grey tile in an RGB cohort
    if image.shape[0] != n_channels:
        raise SegmentationInputError(
            f"{case_paths(image_path)[0]}: {image.shape[0]} channels, the plans have {n_channels}"
        )
    original_shape = list(image.shape[1:])
    ornt = canonical_orientation(affine, dims)
    image = reorient(image, ornt)
    canonical_shape = list(image.shape[1:])
    canonical_affine = reorient_affine(affine, ornt, original_shape)
    spacing = spacing_of(canonical_affine, dims)
    target = plans["target_spacing"]
    instance = plans["kind"] == "instance_segmentation"
    wanted = (plans.get("rescale") or {}).get("nucleus_diameter") if instance else None
    source = "none"
    if wanted:
        source = "given"
        if diameter is None and label is not None and label.ndim == 2:
            diameter, source = median_diameter(label), "reference"
        if diameter is None:
            diameter, source = estimate_diameter(image, nuclei_stats.get("type")), "estimate"
    factor = scale_factor(diameter, wanted)
    shape = resampled_shape(canonical_shape, [s * factor for s in spacing], target)
    image = resample(image, shape, "linear")
    if scheme == "nuclei":
        stats = {k: nuclei_stats[k] for k in ("mean", "std")}
    else:
        image, stats = normalise(image, plans["normalisation"])
    out_label = None
    if label is not None:
        if instance and factor != 1.0:
            # Resized nearest (ids stay ids), the boundary band made on the new grid.
            ids = reorient(label[None].astype(np.int32), ornt)
            ids = resample(ids, shape, "nearest")[0]
            out_label = target_from_instances(ids, touching=TOUCHING_CLASS in plans["classes"])[
                None
            ].astype(np.uint8)
            label = None
        elif instance:
            # Boundaries on the source grid, where instances are exact; then resampled.
            label = target_from_instances(label, touching=TOUCHING_CLASS in plans["classes"])
        else:
            top = len(plans["classes"]) - 1
            if label.max() > top:
                raise SegmentationInputError(
                    f"{label_path}: label value {int(label.max())} above the last class ({top})"
                )
    if label is not None:
        label = reorient(label[None].astype(np.uint8), ornt)
        out_label = resample(label, shape, "nearest").astype(np.uint8)
    meta = {
        "dims": dims,
        "original_shape": original_shape,
        "original_affine": affine.tolist(),
        "orientation": ornt.tolist(),
        "canonical_shape": canonical_shape,
        "canonical_spacing": spacing,
        "shape": shape,
        "affine": resampled_affine(canonical_affine, canonical_shape, shape).tolist(),
        "spacing": [float(t) for t in target],
        "intensity": stats,
    }
    if instance:
        meta["nuclei"] = {
            "type": nuclei_stats.get("type"),
            "inverted": nuclei_stats.get("inverted"),
            "diameter": None if diameter is None else float(diameter),
            "diameter_source": source,
            "scale_factor": factor,
        }
    return np.ascontiguousarray(image, dtype=np.float32), out_label, meta


# --------------------------------------------------------------------------------------------
# Training and validation transforms


class LoadArraysd(Transform):
    """``{"image": array or .npy path, "label": ...}`` -> the arrays (image as float32)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in (IMAGE, LABEL):
            if key in d and isinstance(d[key], (str, Path)):
                d[key] = np.load(d[key])
        d[IMAGE] = np.asarray(d[IMAGE], dtype=np.float32)
        return d


class RandChannelScaleShiftd(RandomizableTransform, MapTransform):
    """Colour/stain jitter of a normalised RGB image: each channel ``x * a + b``.

    With per-channel z-scored inputs, scaling and shifting each channel differently mimics
    the slide-to-slide differences of staining (the H and E dyes vary independently) that a
    fixed per-image normalisation leaves.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        scale: float = 0.15,
        shift: float = 0.15,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.scale, self.shift = scale, shift

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            x = d[key]
            n = x.shape[0]
            shape = (n,) + (1,) * (x.ndim - 1)
            a = self.R.uniform(1 - self.scale, 1 + self.scale, n).reshape(shape)
            b = self.R.uniform(-self.shift, self.shift, n).reshape(shape)
            if isinstance(x, torch.Tensor):
                d[key] = x * torch.as_tensor(a, dtype=x.dtype) + torch.as_tensor(b, dtype=x.dtype)
            else:
                d[key] = (x * a + b).astype(np.float32)
        return d


class RandInvertd(RandomizableTransform, MapTransform):
    """Negate a z-scored image: bright objects on dark become dark on bright.

    Microscopy nuclei are bright in fluorescence and dark in brightfield and histology; the
    inverted tile teaches the network that the polarity does not decide what a nucleus is.
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.2, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if self._do_transform:
            for key in self.key_iterator(d):
                d[key] = -d[key]
        return d


#: Probability of :class:`RandInvertd` in the chain of an RGB task (not a configuration key).
INVERT_PROB = 0.2


def _crops(patch: list[int], samples_per_image: int, positive_fraction: float) -> list[Transform]:
    """Pad to the patch, list foreground/background voxels, draw the patches."""
    keys = [IMAGE, LABEL]
    return [
        SpatialPadd(keys=keys, spatial_size=patch, mode="constant"),
        # Deterministic, so a CacheDataset keeps it: the crop then needs no search per draw.
        FgBgToIndicesd(keys=LABEL),
        RandCropByPosNegLabeld(
            keys=keys,
            label_key=LABEL,
            spatial_size=patch,
            pos=float(positive_fraction),
            neg=1.0 - float(positive_fraction),
            num_samples=int(samples_per_image),
            fg_indices_key=f"{LABEL}_fg_indices",
            bg_indices_key=f"{LABEL}_bg_indices",
            allow_smaller=False,
        ),
        DeleteItemsd(keys=[f"{LABEL}_fg_indices", f"{LABEL}_bg_indices"]),
    ]


def _spatial(
    plans: Mapping[str, Any], patch: list[int], scale_range: Sequence[float]
) -> list[Transform]:
    """Flips on every axis, quarter turns (square 2D patches), rotation and scaling, and the
    elastic deformation."""
    keys = [IMAGE, LABEL]
    dims = int(plans["dims"])
    lo, hi = (float(x) for x in scale_range)
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range {[lo, hi]} must be two factors 0 < min <= max")
    rotate = np.deg2rad(30.0) if dims == 3 else np.pi
    anisotropic = dims == 3 and max(plans["target_spacing"]) > 2.5 * min(plans["target_spacing"])
    if anisotropic:
        # Rotate in-plane only: out of plane the coarse axis would be blurred into the fine.
        axis = int(np.argmax(plans["target_spacing"]))
        rotate_range = [np.deg2rad(30.0) if a == axis else 0.0 for a in range(3)]
    else:
        rotate_range = [rotate] if dims == 2 else [rotate] * 3
    spatial: list[Any] = [RandFlipd(keys=keys, prob=0.5, spatial_axis=a) for a in range(dims)]
    if quarter_turns(patch):
        spatial.append(RandRotate90d(keys=keys, prob=0.5, max_k=3))
    spatial.append(
        RandAffined(
            keys=keys,
            prob=0.3,
            rotate_range=rotate_range,
            # MONAI draws 1 + U(lo - 1, hi - 1); a factor f scales the content by 1/f
            scale_range=[(lo - 1.0, hi - 1.0)] * dims,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    )
    # A grid of control points in 2D, a smoothed random field in 3D (cheaper there).
    if dims == 2:
        deform, grid = Rand2DElasticd, {"prob": 0.1, "spacing": (32, 32), "magnitude_range": (1, 2)}
    else:
        deform, grid = Rand3DElasticd, {"prob": 0.05, "sigma_range": (5, 7)}
        grid["magnitude_range"] = (20, 50)
    spatial.append(deform(keys=keys, mode=("bilinear", "nearest"), padding_mode="zeros", **grid))
    return spatial


def _intensity(plans: Mapping[str, Any]) -> list[Transform]:
    """Intensity scale/shift, noise, gamma; RGB plans add colour jitter and inversion."""
    intensity: list[Any] = [
        RandScaleIntensityd(keys=IMAGE, prob=0.3, factors=0.15),
        RandShiftIntensityd(keys=IMAGE, prob=0.3, offsets=0.1),
        RandGaussianNoised(keys=IMAGE, prob=0.1, std=0.05),
        _RandGammad(keys=IMAGE, prob=0.3, gamma=(0.7, 1.5)),
    ]
    if plans["normalisation"]["scheme"] == "rgb":
        intensity += [
            RandChannelScaleShiftd(keys=IMAGE, prob=0.5),
            RandInvertd(keys=IMAGE, prob=INVERT_PROB),
        ]
    return intensity


def train_transforms(
    plans: Mapping[str, Any],
    *,
    samples_per_image: int,
    positive_fraction: float,
    scale_range: Sequence[float],
    augment: bool,
) -> Compose:
    """Random patches and augmentation of preprocessed ``{"image", "label"}`` arrays.

    Padding to the patch and the foreground/background voxel lists come first (deterministic:
    a :class:`~monai.data.CacheDataset` computes them once). Patches by
    :class:`~monai.transforms.RandCropByPosNegLabeld` (``positive_fraction`` centred on
    foreground, as nnU-Net's oversampling), then flips on every axis, rotation and scaling
    (affine, prob 0.3), cheap elastic deformation (prob 0.1), intensity scale/shift, gamma,
    noise; RGB plans add colour jitter and polarity inversion. Label interpolation is
    nearest.

    Args:
        plans: the task's plans (``dims``, ``patch_size``, ``normalisation``,
            ``target_spacing``).
        samples_per_image: ``segmentation.samples_per_image``, patches per image and visit.
        positive_fraction: ``segmentation.positive_fraction``, the share centred on
            foreground.
        scale_range: ``segmentation.scale_range``, the affine's zoom factors (min, max).
        augment: ``train.augment``; False: crops only.

    Returns:
        Transform of ``{"image": float32 (C, *spatial), "label": uint8 (1, *spatial)}`` to a
        list of ``samples_per_image`` patch dicts.
    """
    patch = [int(p) for p in plans["patch_size"]]
    crop = _crops(patch, samples_per_image, positive_fraction)
    ensure = EnsureTyped(keys=[IMAGE, LABEL], track_meta=False)
    if augment is False:
        return Compose([*crop, ensure])
    return Compose([*crop, *_spatial(plans, patch, scale_range), *_intensity(plans), ensure])


class _RandGammad(RandAdjustContrastd):
    """Gamma on a z-scored image: MONAI's RandAdjustContrastd rescales to the image's range
    around the gamma and back (``retain_stats``), so negative values are handled."""

    def __init__(self, keys: KeysCollection, prob: float, gamma: tuple[float, float]) -> None:
        super().__init__(keys=keys, prob=prob, gamma=gamma, retain_stats=True)


def val_transforms(plans: Mapping[str, Any]) -> Compose:
    """Validation: the whole preprocessed image as it is (sliding-window inference pads)."""
    return Compose([EnsureTyped(keys=[IMAGE, LABEL], track_meta=False, allow_missing_keys=True)])
