"""Plans and preprocessing for segmentation tasks (2D/3D semantic, 2D nuclei instances).

The decisions follow nnU-Net's: a *fingerprint* of the cohort (voxel spacings, shapes,
foreground intensities per channel) gives the *plans* (target spacing, patch size, batch size,
intensity normalisation, network), written once to ``plans.json`` and read by training and
prediction. :func:`preprocess_case` applies them to one case.

Axis conventions. Arrays are channel first. A 3D volume is reoriented to the closest canonical
RAS+ voxel order (axis permutations and flips only, so an oblique acquisition stays oblique,
nothing is interpolated), then resampled to the target spacing. A 2D image keeps the ingest
order ``(i, j)`` (i along an image row): a tile has no patient axes worth reorienting to, and
a 2D network does not care. The mapping back (:func:`medcnn.inference.segmentation.to_original_grid`)
uses the ``meta`` dictionary returned here.

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

import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
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

from medcnn.postprocess.instances import target_from_instances

IMAGE, LABEL = "image", "label"

#: Classes of an instance task's training target, made from the instance map.
INSTANCE_CLASSES = ["background", "interior", "boundary"]
#: The fourth class of an instance task with ``touching_class``.
TOUCHING_CLASS = "touching"


def instance_classes(touching: bool) -> list[str]:
    """The classes an instance task's network learns (see :mod:`medcnn.postprocess.instances`)."""
    return [*INSTANCE_CLASSES, *([TOUCHING_CLASS] if touching else [])]


#: Voxels sampled per case and channel for the foreground intensity statistics.
SAMPLES_PER_CASE = 10_000
#: Features of the first U-Net level, and the cap on any level (nnU-Net's 32 / 320 in 3D).
BASE_FEATURES = {2: 32, 3: 16}
MAX_FEATURES = {2: 256, 3: 256}
#: Smallest side of the bottleneck feature map: no pooling below this many voxels.
MIN_BOTTLENECK = 4
MAX_POOLS = 5


class SegmentationInputError(ValueError):
    """An image or label file that cannot be used (layout, grid mismatch, no data)."""


# --------------------------------------------------------------------------------------------
# Reading


def _paths(image_path: str | Path | Sequence[str | Path]) -> list[Path]:
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
        data = np.asanyarray(img.dataobj)
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


def _reorient(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Apply an orientation to every channel of ``(C, *spatial)``."""
    return np.stack([nib.orientations.apply_orientation(c, ornt) for c in array])


def _reorient_affine(affine: np.ndarray, ornt: np.ndarray, shape: Sequence[int]) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Fingerprint and plans


def _read_case(case: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """Image channels, affine, dims, label (or None) of one case, in file voxel order."""
    paths = _paths(case["image"])
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


def fingerprint(cases: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """What the plans are made from: grids, channels and foreground intensities of a cohort.

    Args:
        cases: ``{"image": path or [paths] (channels), "label": path or None}``.
        seed: for the sampling of foreground voxels.

    Returns:
        ``{"n_cases", "dims", "n_channels", "spacings", "shapes" (canonical order),
        "median_spacing", "foreground": [per channel {"mean", "std", "p00_5", "p99_5", "min",
        "max"}], "label_values", "foreground_fraction"}``. Foreground means label > 0 where a
        label exists, else the whole image; up to ``SAMPLES_PER_CASE`` voxels per case and
        channel are pooled.

    Raises:
        SegmentationInputError: no cases, mixed 2D/3D, or a case that cannot be read.
    """
    if not cases:
        raise SegmentationInputError("no cases to fingerprint")
    rng = np.random.default_rng(seed)
    spacings, shapes, dims_seen, channels_seen = [], [], set(), []
    samples: list[list[np.ndarray]] = []
    values: set[int] = set()
    fg_fraction = []
    for case in cases:
        image, affine, dims, label = _read_case(case)
        ornt = canonical_orientation(affine, dims)
        shape = list(image.shape[1:])
        canon_shape = [shape[int(ax)] for ax in np.argsort(ornt[:, 0])]
        spacing = spacing_of(affine, dims)
        spacings.append([spacing[int(ax)] for ax in np.argsort(ornt[:, 0])])
        shapes.append(canon_shape)
        dims_seen.add(dims)
        channels_seen.append(image.shape[0])
        if label is not None:
            values.update(int(v) for v in np.unique(label))
            mask = label > 0
            fg_fraction.append(float(mask.mean()))
        else:
            mask = np.ones(image.shape[1:], bool)
        if not mask.any():
            mask = np.ones(image.shape[1:], bool)
        where = np.flatnonzero(mask)
        pick = rng.choice(where, size=min(SAMPLES_PER_CASE, where.size), replace=False)
        for c in range(image.shape[0]):
            while len(samples) <= c:
                samples.append([])
            samples[c].append(image[c].reshape(-1)[pick])
    if len(dims_seen) > 1:
        raise SegmentationInputError("the cohort mixes 2D images and 3D volumes")
    foreground = []
    for pooled in samples:
        v = np.concatenate(pooled).astype(np.float64)
        foreground.append(
            {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "p00_5": float(np.percentile(v, 0.5)),
                "p99_5": float(np.percentile(v, 99.5)),
                "min": float(v.min()),
                "max": float(v.max()),
            }
        )
    return {
        "n_cases": len(cases),
        "dims": dims_seen.pop(),
        "n_channels": int(max(channels_seen)),
        "channels_per_case": sorted(set(channels_seen)),
        "spacings": spacings,
        "shapes": shapes,
        "median_spacing": [float(x) for x in np.median(np.array(spacings), axis=0)],
        "foreground": foreground,
        "label_values": sorted(values),
        "foreground_fraction": float(np.mean(fg_fraction)) if fg_fraction else None,
    }


def normalisation_scheme(task_cfg: Mapping[str, Any], n_channels: int) -> str:
    """``ct``, ``mr``, ``rgb`` or ``zscore``: the task's setting, else from its modality.

    ``auto`` (or no setting) takes ``ct`` for CT, ``mr`` for MR, ``rgb`` for three-channel
    2D images (microscopy, photographs), ``zscore`` otherwise.
    """
    chosen = task_cfg.get("preprocess", {}).get("normalisation", "auto")
    if chosen != "auto":
        return str(chosen)
    modalities = {str(m).upper() for m in task_cfg.get("modalities", [])}
    if modalities == {"CT"}:
        return "ct"
    if modalities and modalities <= {"MR"}:
        return "mr"
    if n_channels == 3:
        return "rgb"
    return "zscore"


def _pools(patch: Sequence[int], spacing: Sequence[float], max_pools: int) -> list[list[int]]:
    """Strides per level: an axis is pooled while its map stays >= MIN_BOTTLENECK voxels and,
    for anisotropic grids, only once its voxels are no coarser than twice the finest axis
    (nnU-Net's rule: pool the fine axes first until the voxel is roughly isotropic)."""
    size = list(patch)
    current = list(spacing)
    strides = []
    for _ in range(max_pools):
        finest = min(current)
        step = [
            2 if size[a] // 2 >= MIN_BOTTLENECK and current[a] <= 2 * finest else 1
            for a in range(len(size))
        ]
        if all(s == 1 for s in step):
            break
        strides.append(step)
        size = [n // s for n, s in zip(size, step, strict=True)]
        current = [c * s for c, s in zip(current, step, strict=True)]
    return strides


def network_settings(
    name: str,
    dims: int,
    in_channels: int,
    out_channels: int,
    strides: list[list[int]],
    base: int | None = None,
) -> dict[str, Any]:
    """The ``network`` dict of the plans (everything :func:`build_network` needs).

    ``base``: features of the first level (doubling per level); None: BASE_FEATURES.
    """
    levels = len(strides) + 1
    base = int(base or BASE_FEATURES[dims])
    channels = [min(base * 2**k, MAX_FEATURES[dims]) for k in range(levels)]
    net: dict[str, Any] = {
        "name": name,
        "dims": dims,
        "in_channels": in_channels,
        "out_channels": out_channels,
    }
    if name == "unet":
        net.update(
            channels=channels,
            strides=[s if len(set(s)) > 1 else s[0] for s in strides],
            num_res_units=2,
            norm="instance",
        )
    elif name == "dynunet":
        net.update(
            kernel_size=[[3] * dims] * levels,
            strides=[[1] * dims, *strides],
            upsample_kernel_size=strides,
            filters=channels,
            norm_name="instance",
            res_block=True,
        )
    elif name == "segresnet":
        net.update(init_filters=base, blocks_down=[1, 2, 2, 4][:levels], blocks_up=[1] * 3)
        net["blocks_up"] = [1] * (len(net["blocks_down"]) - 1)
    else:
        raise ValueError(f"unknown segmentation network {name!r} (unet, dynunet, segresnet)")
    return net


def divisor_of(strides: list[list[int]], dims: int) -> list[int]:
    """Per axis, the product of the strides: a patch side must be a multiple of it."""
    div = [1] * dims
    for s in strides:
        div = [d * k for d, k in zip(div, s, strict=True)]
    return div


def estimate_memory_mb(patch: Sequence[int], batch: int, dims: int, in_channels: int) -> float:
    """Rough training memory of the plans' U-Net: activations kept for backward, in MB.

    Per level the feature maps (convolutions, norms, activations, residuals; encoder and
    decoder) come to about 14 tensors of the level's width; measured against MONAI's UNet
    with two residual units in fp32 within a factor 1.5, which is what a plan needs.
    """
    voxels = float(np.prod(patch))
    total, k = 0.0, 0
    width = BASE_FEATURES[dims]
    while k <= MAX_POOLS:
        total += min(width * 2**k, MAX_FEATURES[dims]) * voxels / (2 ** (dims * k))
        k += 1
    return batch * (14 * total + 4 * in_channels * voxels) * 4 / 2**20


def fit_patch(
    median_shape: Sequence[int],
    spacing: Sequence[float],
    dims: int,
    in_channels: int,
    batch_size: int,
    memory_budget_mb: float,
    max_patch: Sequence[int] | None = None,
) -> tuple[list[int], list[list[int]]]:
    """Largest patch the budget holds, each side a multiple of the network's total stride.

    Starts from the median shape rounded up to a multiple of the stride product on each axis
    (capped by ``max_patch``: the whole median image when it fits, as nnU-Net does), then
    halves the side that is largest in mm, and rounds it down to the stride product again,
    until :func:`estimate_memory_mb` fits ``memory_budget_mb``. Strides follow the patch
    (:func:`_pools`), so a smaller patch may have fewer levels.

    Returns:
        (patch size, strides per level).
    """
    patch = [max(8, int(n)) for n in median_shape]
    if max_patch is not None:
        patch = [min(p, int(m)) for p, m in zip(patch, max_patch, strict=True)]
    strides = _pools(patch, spacing, MAX_POOLS)
    div = divisor_of(strides, dims)
    patch = [int(math.ceil(p / d) * d) for p, d in zip(patch, div, strict=True)]
    while estimate_memory_mb(patch, batch_size, dims, in_channels) > memory_budget_mb:
        extent = [p * s for p, s in zip(patch, spacing, strict=True)]
        axis = int(np.argmax(extent))
        if patch[axis] <= 16:
            break
        patch[axis] = max(16, patch[axis] // 2)
        strides = _pools(patch, spacing, MAX_POOLS)
        div = divisor_of(strides, dims)
        patch = [max(d, (p // d) * d) for p, d in zip(patch, div, strict=True)]
    return patch, strides


def make_seg_plans(
    name: str,
    task_cfg: Mapping[str, Any],
    cases: Sequence[Mapping[str, Any]],
    memory_budget_mb: float = 4000.0,
) -> dict[str, Any]:
    """A segmentation task's plans from its cases (written as ``plans.json``).

    Args:
        name: task name.
        task_cfg: the task's config. Read: ``kind`` (``segmentation`` or
            ``instance_segmentation``), ``modalities``, ``classes`` (semantic: names, the
            first ``background``; default from the label values), ``touching_class``
            (instance tasks: learn the touching boundary as a fourth class), ``preprocess``
            (``spacing``: a fixed target spacing; ``normalisation``; ``patch_size``),
            ``network`` (``name``: ``unet`` default), ``train`` (``batch_size``).
        cases: ``{"image": path or [paths], "label": path or None}``.
        memory_budget_mb: training memory the patch and batch may take.

    Returns:
        ``{"task", "kind", "dims", "modality", "n_channels", "classes", "target_spacing",
        "median_shape", "patch_size", "batch_size", "normalisation", "network",
        "fingerprint"}``.
    """
    fp = fingerprint(cases)
    kind = task_cfg.get("kind", "segmentation")
    dims = fp["dims"]
    pre = task_cfg.get("preprocess", {}) or {}
    if pre.get("spacing"):
        target = [float(s) for s in pre["spacing"]]
        if len(target) == 1:
            target = target * dims
    else:
        target = fp["median_spacing"]
    # Each case's size at the target spacing; the median per axis.
    sizes = np.array(
        [
            [n * s / t for n, s, t in zip(shape, sp, target, strict=True)]
            for shape, sp in zip(fp["shapes"], fp["spacings"], strict=True)
        ]
    )
    median_shape = [int(round(v)) for v in np.median(sizes, axis=0)]
    n_channels = fp["n_channels"]
    scheme = normalisation_scheme(task_cfg, n_channels)
    if kind == "instance_segmentation":
        classes = instance_classes(bool(task_cfg.get("touching_class")))
    else:
        classes = list(task_cfg.get("classes") or [])
        if not classes:
            top = max(fp["label_values"] or [1])
            classes = ["background", *([f"class{k}" for k in range(1, top + 1)] or ["foreground"])]
            if top == 1:
                classes = ["background", "foreground"]
    train_cfg = task_cfg.get("train", {}) or {}
    batch = int(train_cfg.get("batch_size") or (2 if dims == 3 else 8))
    if pre.get("patch_size"):
        patch = [int(p) for p in pre["patch_size"]]
        strides = _pools(patch, target, MAX_POOLS)
    else:
        patch, strides = fit_patch(median_shape, target, dims, n_channels, batch, memory_budget_mb)
    net_name = (task_cfg.get("network") or {}).get("name", "unet")
    network = network_settings(
        net_name,
        dims,
        n_channels,
        len(classes),
        strides,
        (task_cfg.get("network") or {}).get("features"),
    )
    normalisation: dict[str, Any] = {"scheme": scheme}
    if scheme == "ct":
        # One window and one mean/std for the whole cohort: Hounsfield units mean the same
        # in every scan, so the foreground's statistics transfer from case to case.
        fg = fp["foreground"]
        normalisation.update(
            lower=[c["p00_5"] for c in fg],
            upper=[c["p99_5"] for c in fg],
            mean=[c["mean"] for c in fg],
            std=[max(c["std"], 1e-8) for c in fg],
        )
    return {
        "task": name,
        "kind": kind,
        "dims": dims,
        "modality": list(task_cfg.get("modalities", [])),
        "n_channels": n_channels,
        "classes": classes,
        "target_spacing": [float(t) for t in target],
        "median_shape": median_shape,
        "patch_size": patch,
        "batch_size": batch,
        "memory_budget_mb": float(memory_budget_mb),
        "estimated_memory_mb": round(estimate_memory_mb(patch, batch, dims, n_channels), 1),
        "normalisation": normalisation,
        "network": network,
        "fingerprint": fp,
    }


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
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """One case to the network's grid: canonical order, target spacing, normalised.

    Args:
        image_path: the ingest NIfTI, or one per channel (same grid).
        label_path: its label map (role ``mask`` or ``instances``), or None.
        plans: from :func:`make_seg_plans`.

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
    image, affine, dims, label = _read_case(case)
    if dims != plans["dims"]:
        raise SegmentationInputError(
            f"{_paths(image_path)[0]}: {dims}D image for a {plans['dims']}D task"
        )
    n_channels = int(plans["n_channels"])
    if image.shape[0] == 1 and n_channels == 3:
        image = np.repeat(image, 3, axis=0)  # a grey tile in an RGB cohort
    if image.shape[0] != n_channels:
        raise SegmentationInputError(
            f"{_paths(image_path)[0]}: {image.shape[0]} channels, the plans have {n_channels}"
        )
    original_shape = list(image.shape[1:])
    ornt = canonical_orientation(affine, dims)
    image = _reorient(image, ornt)
    canonical_shape = list(image.shape[1:])
    canonical_affine = _reorient_affine(affine, ornt, original_shape)
    spacing = spacing_of(canonical_affine, dims)
    target = plans["target_spacing"]
    shape = resampled_shape(canonical_shape, spacing, target)
    image = resample(image, shape, "linear")
    image, stats = normalise(image, plans["normalisation"])
    out_label = None
    if label is not None:
        if plans["kind"] == "instance_segmentation":
            # Boundaries on the source grid, where instances are exact; then resampled.
            label = target_from_instances(label, touching=TOUCHING_CLASS in plans["classes"])
        else:
            top = len(plans["classes"]) - 1
            if label.max() > top:
                raise SegmentationInputError(
                    f"{label_path}: label value {int(label.max())} above the last class ({top})"
                )
        label = _reorient(label[None].astype(np.uint8), ornt)
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


def train_transforms(
    plans: Mapping[str, Any], task_cfg: Mapping[str, Any] | None = None
) -> Compose:
    """Random patches and augmentation of preprocessed ``{"image", "label"}`` arrays.

    Padding to the patch and the foreground/background voxel lists come first (deterministic:
    a :class:`~monai.data.CacheDataset` computes them once). Patches by
    :class:`~monai.transforms.RandCropByPosNegLabeld` (a third centred on foreground, as
    nnU-Net's oversampling), then flips on every axis, rotation and scaling
    (affine, prob 0.3), cheap elastic deformation (prob 0.1), intensity scale/shift, gamma,
    noise; RGB plans add colour jitter and polarity inversion. Label interpolation is
    nearest.

    Args:
        plans: the task's plans (``dims``, ``patch_size``, ``normalisation``).
        task_cfg: optional; ``train.samples_per_image`` (patches drawn per image and visit,
            default 2), ``train.scale_range`` (the affine's zoom factors, default 0.85-1.15;
            nnU-Net draws 0.7-1.4), ``train.augment`` (False: crops only).

    Returns:
        Transform of ``{"image": float32 (C, *spatial), "label": uint8 (1, *spatial)}`` to a
        list of ``samples_per_image`` patch dicts.
    """
    train_cfg = (task_cfg or {}).get("train", {}) or {}
    dims = int(plans["dims"])
    patch = [int(p) for p in plans["patch_size"]]
    samples = int(train_cfg.get("samples_per_image", 2))
    keys = [IMAGE, LABEL]
    crop = [
        SpatialPadd(keys=keys, spatial_size=patch, mode="constant"),
        # Deterministic, so a CacheDataset keeps it: the crop then needs no search per draw.
        FgBgToIndicesd(keys=LABEL),
        RandCropByPosNegLabeld(
            keys=keys,
            label_key=LABEL,
            spatial_size=patch,
            # a third of the patches on foreground by default (nnU-Net's oversampling)
            pos=float(train_cfg.get("positive_fraction", 1 / 3)),
            neg=1.0 - float(train_cfg.get("positive_fraction", 1 / 3)),
            num_samples=samples,
            fg_indices_key=f"{LABEL}_fg_indices",
            bg_indices_key=f"{LABEL}_bg_indices",
            allow_smaller=False,
        ),
        DeleteItemsd(keys=[f"{LABEL}_fg_indices", f"{LABEL}_bg_indices"]),
    ]
    if train_cfg.get("augment", True) is False:
        return Compose([*crop, EnsureTyped(keys=keys, track_meta=False)])
    lo, hi = (float(x) for x in train_cfg.get("scale_range", (0.85, 1.15)))
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
    if dims == 2 and patch[0] == patch[1]:
        # Quarter turns only on square patches: a turned 48x32 patch would not batch.
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
    elastic = (
        Rand2DElasticd(
            keys=keys,
            prob=0.1,
            spacing=(32, 32),
            magnitude_range=(1, 2),
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
        if dims == 2
        else Rand3DElasticd(
            keys=keys,
            prob=0.05,
            sigma_range=(5, 7),
            magnitude_range=(20, 50),
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    )
    intensity: list[Any] = [
        RandScaleIntensityd(keys=IMAGE, prob=0.3, factors=0.15),
        RandShiftIntensityd(keys=IMAGE, prob=0.3, offsets=0.1),
        RandGaussianNoised(keys=IMAGE, prob=0.1, std=0.05),
        _RandGammad(keys=IMAGE, prob=0.3, gamma=(0.7, 1.5)),
    ]
    if plans["normalisation"]["scheme"] == "rgb":
        intensity += [
            RandChannelScaleShiftd(keys=IMAGE, prob=0.5),
            RandInvertd(keys=IMAGE, prob=float(train_cfg.get("invert_prob", 0.2))),
        ]
    return Compose([*crop, *spatial, elastic, *intensity, EnsureTyped(keys=keys, track_meta=False)])


class _RandGammad(RandAdjustContrastd):
    """Gamma on a z-scored image: MONAI's RandAdjustContrastd rescales to the image's range
    around the gamma and back (``retain_stats``), so negative values are handled."""

    def __init__(self, keys: KeysCollection, prob: float, gamma: tuple[float, float]) -> None:
        super().__init__(keys=keys, prob=prob, gamma=gamma, retain_stats=True)


def val_transforms(plans: Mapping[str, Any]) -> Compose:
    """Validation: the whole preprocessed image as it is (sliding-window inference pads)."""
    return Compose([EnsureTyped(keys=[IMAGE, LABEL], track_meta=False, allow_missing_keys=True)])
