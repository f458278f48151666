"""Experiment planning for segmentation tasks, as nnU-Net's.

A *fingerprint* of the cohort (voxel spacings, shapes, foreground intensities per channel)
gives the *plans*: target spacing, patch size and batch size fitted to a memory budget,
intensity normalisation and the network's topology. They are written once to ``plans.json``
and read by training and prediction (:func:`medcnn.transforms.segmentation.preprocess_case`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medcnn.postprocess.instances import median_diameter
from medcnn.transforms.nuclei import image_profile, scale_factor, training_profile
from medcnn.transforms.segmentation import instance_classes
from medcnn.transforms.slices import SLICE_AXES, in_plane
from medcnn.transforms.spatial import (
    SegmentationInputError,
    canonical_orientation,
    read_case,
    spacing_of,
)

#: Voxels sampled per case and channel for the foreground intensity statistics.
SAMPLES_PER_CASE = 10_000


#: Features of the first U-Net level, and the cap on any level (nnU-Net's 32 / 320 in 3D).
BASE_FEATURES = {2: 32, 3: 16}


MAX_FEATURES = {2: 256, 3: 256}


#: Smallest side of the bottleneck feature map: no pooling below this many voxels.
MIN_BOTTLENECK = 4


MAX_POOLS = 5


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
        image, affine, dims, label = read_case(case)
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


def normalisation_scheme(
    chosen: str, modalities: Sequence[str], n_channels: int, kind: str = "segmentation"
) -> str:
    """``ct``, ``mr``, ``mr_robust``, ``rgb``, ``zscore`` or ``nuclei``: ``chosen``, unless it
    is ``auto``.

    ``auto`` takes ``nuclei`` for instance tasks (one grey channel, nuclei bright, whatever
    the microscope: :func:`medcnn.transforms.nuclei.nuclei_grey`), ``ct`` for CT, ``mr`` for
    MR, ``rgb`` for three-channel 2D images (photographs), ``zscore`` otherwise.
    """
    if chosen != "auto":
        return str(chosen)
    if kind == "instance_segmentation":
        return "nuclei"
    upper = {str(m).upper() for m in modalities}
    if upper == {"CT"}:
        return "ct"
    if upper and upper <= {"MR"}:
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


def plan_classes(kind: str, classes: Sequence[str], touching_class: bool) -> list[str]:
    """The classes the network learns: ``background`` and the task's ``classes`` (semantic),
    or the instance target's (:func:`~medcnn.transforms.segmentation.instance_classes`)."""
    if kind == "instance_segmentation":
        return instance_classes(touching_class)
    return ["background", *classes]


def _target_spacing(fp: Mapping[str, Any], spacing: Sequence[float] | None) -> list[float]:
    """The configured spacing (one value: every axis), or the cohort's median."""
    if not spacing:
        return list(fp["median_spacing"])
    target = [float(s) for s in spacing]
    return target * fp["dims"] if len(target) == 1 else target


def _median_shape(fp: Mapping[str, Any], target: Sequence[float]) -> list[int]:
    """Each case's size at the target spacing; the median per axis."""
    sizes = np.array(
        [
            [n * s / t for n, s, t in zip(shape, sp, target, strict=True)]
            for shape, sp in zip(fp["shapes"], fp["spacings"], strict=True)
        ]
    )
    return [int(round(v)) for v in np.median(sizes, axis=0)]


def _normalisation(scheme: str, fp: Mapping[str, Any]) -> dict[str, Any]:
    """The plans' ``normalisation``: the scheme, and for ``ct`` the cohort's window and stats."""
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
    return normalisation


def make_seg_plans(
    name: str,
    cases: Sequence[Mapping[str, Any]],
    *,
    kind: str,
    modalities: Sequence[str],
    classes: Sequence[str],
    touching_class: bool,
    target_spacing: Sequence[float] | None,
    patch_size: Sequence[int] | None,
    normalisation: str,
    network: str,
    features: int | None,
    batch_size: int | None,
    memory_budget_mb: float,
    nucleus_diameter: float | None = None,
    slices: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A segmentation task's plans from its cases (written as ``plans.json``).

    Every setting is the configured task's (the schema holds the defaults; the stage passes
    the validated task's values).

    Args:
        name: task name.
        cases: ``{"image": path or [paths], "label": path or None}``.
        kind: ``segmentation`` or ``instance_segmentation``.
        modalities: the task's ``modalities`` (``auto`` normalisation chooses by them).
        classes: ``segmentation.classes``, the foreground names (semantic tasks).
        touching_class: ``segmentation.touching_class`` (instance tasks: the fourth class).
        target_spacing: ``segmentation.target_spacing``; None: the cohort's median.
        patch_size: ``segmentation.patch_size``; None: fitted to ``memory_budget_mb``.
        normalisation: ``segmentation.normalisation`` (``auto`` or a scheme).
        network: ``network.name`` (``unet``, ``dynunet``, ``segresnet``).
        features: ``segmentation.features``; None: :data:`BASE_FEATURES`.
        batch_size: ``train.batch_size``; None: 2 (3D) or 8 (2D).
        memory_budget_mb: ``segmentation.memory_mb``, the training memory of patch and batch.
        nucleus_diameter: ``segmentation.nucleus_diameter`` (instance tasks): every image is
            resized so that its typical nucleus is this many pixels across (Cellpose-style,
            :mod:`medcnn.transforms.nuclei`); None: no resizing.
        slices: ``segmentation.slices`` (``enabled``, ``axis``, ``context``,
            ``foreground_fraction``): with ``enabled`` on a 3D cohort, a 2D network on the
            volumes' slices (:mod:`medcnn.transforms.slices`); the patch, batch and network
            are then planned for the slices (in-plane median shape and spacing); 2D cohorts
            ignore it.

    Returns:
        ``{"task", "kind", "dims", "modality", "n_channels", "classes", "target_spacing",
        "median_shape", "patch_size", "batch_size", "normalisation", "network",
        "fingerprint", "rescale"}``; instance tasks add ``nuclei_profile`` (images per type,
        nucleus diameters, raw intensity range: what prediction checks a new image against);
        2D-on-volume plans add ``slices`` (``axis``, ``axis_index``, ``context``,
        ``foreground_fraction``), with ``dims`` 3 (the data's), a 2D ``patch_size`` and a 2D
        ``network``.
    """
    fp = fingerprint(cases)
    dims = fp["dims"]
    scheme = normalisation_scheme(normalisation, modalities, fp["n_channels"], kind)
    n_channels = 1 if scheme == "nuclei" else fp["n_channels"]
    target = _target_spacing(fp, target_spacing)
    profile = None
    if kind == "instance_segmentation":
        profiles = [_nuclei_profile(case) for case in cases]
        profile = training_profile(profiles)
        if nucleus_diameter:
            # each image at the size it is trained at: its nuclei nucleus_diameter across
            factors = [scale_factor(p["diameter"], nucleus_diameter) for p in profiles]
            fp = {
                **fp,
                "spacings": [
                    [s * f for s in sp] for sp, f in zip(fp["spacings"], factors, strict=True)
                ],
            }
    median_shape = _median_shape(fp, target)
    names = plan_classes(kind, classes, touching_class)
    sliced = _slice_plan(slices) if dims == 3 and slices and slices.get("enabled") else None
    # The network's grid: the volume's, or one slice's (in-plane shape and spacing).
    net_dims, net_target, net_shape, net_channels = dims, target, median_shape, n_channels
    if sliced is not None:
        axis = sliced["axis_index"]
        net_dims, net_target = 2, in_plane(target, axis)
        net_shape = in_plane(median_shape, axis)
        net_channels = n_channels * (2 * sliced["context"] + 1)
    batch = int(batch_size or (2 if net_dims == 3 else 8))
    if patch_size:
        patch = [int(p) for p in patch_size]
        if len(patch) != net_dims:
            raise ValueError(
                f"segmentation.patch_size {patch} has {len(patch)} sides for a {net_dims}D network"
            )
        strides = _pools(patch, net_target, MAX_POOLS)
    else:
        patch, strides = fit_patch(
            net_shape, net_target, net_dims, net_channels, batch, memory_budget_mb
        )
    plans = {
        "task": name,
        "kind": kind,
        "dims": dims,
        "modality": list(modalities),
        "n_channels": n_channels,
        "classes": names,
        "target_spacing": [float(t) for t in target],
        "median_shape": median_shape,
        "patch_size": patch,
        "batch_size": batch,
        "memory_budget_mb": float(memory_budget_mb),
        "estimated_memory_mb": round(estimate_memory_mb(patch, batch, net_dims, net_channels), 1),
        "normalisation": _normalisation(scheme, fp),
        "network": network_settings(network, net_dims, net_channels, len(names), strides, features),
        "fingerprint": fp,
        "rescale": {"nucleus_diameter": float(nucleus_diameter) if nucleus_diameter else None},
    }
    if sliced is not None:
        plans["slices"] = sliced
    if profile is not None:
        plans["nuclei_profile"] = profile
    return plans


def _slice_plan(slices: Mapping[str, Any]) -> dict[str, Any]:
    """The plans' ``slices`` from ``segmentation.slices``: the axis by name and index in the
    canonical grid, the context slices per side, the share of draws with foreground."""
    axis = str(slices.get("axis", "axial"))
    if axis not in SLICE_AXES:
        raise ValueError(f"segmentation.slices.axis {axis!r} is not one of {sorted(SLICE_AXES)}")
    return {
        "axis": axis,
        "axis_index": SLICE_AXES[axis],
        "context": int(slices.get("context", 0)),
        "foreground_fraction": float(slices.get("foreground_fraction", 0.5)),
    }


def _nuclei_profile(case: Mapping[str, Any]) -> dict[str, Any]:
    """One training image's :func:`~medcnn.transforms.nuclei.image_profile`, its diameter
    the median of its reference instances."""
    image, _, _, label = read_case(case)
    diameter = median_diameter(label) if label is not None and label.ndim == 2 else None
    return image_profile(image, diameter)
