"""Segment images with trained bundles and map the result back onto the ingest grid.

Prediction runs in the preprocessed space (canonical order, target spacing, normalised, see
:func:`medcnn.transforms.segmentation.preprocess_case`): the folds' softmax outputs are
averaged (sliding windows, optional mirroring), then :func:`to_original_grid` brings the
probabilities (linear) or labels (nearest) back to exactly the ingest NIfTI's voxel grid and
affine. Labels are taken as the argmax *after* the probabilities are back on the original
grid, so a coarse target spacing does not leave staircase edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.inferers import sliding_window_inference

from medcnn.hardware import autocast
from medcnn.models.bundle import load_bundle
from medcnn.postprocess.instances import instances_from_probabilities, median_diameter
from medcnn.transforms.segmentation import preprocess_case
from medcnn.transforms.slices import slice_settings, slice_stack, unstack_slices
from medcnn.transforms.spatial import SegmentationInputError, resample
from medcnn.transforms.symmetry import flip_sets, quarter_turns


def load_models(
    folders: Sequence[str | Path], device: torch.device | str = "cpu"
) -> tuple[list[torch.nn.Module], dict[str, Any]]:
    """The fold bundles' networks (eval mode, on ``device``) and the first one's description.

    Raises:
        medcnn.models.bundle.BundleError: a bundle that is missing or does not verify.
        ValueError: no folders, or folds trained with different plans.
    """
    if not folders:
        raise ValueError("no model bundles given")
    models, descriptions = [], []
    for folder in folders:
        model, description = load_bundle(Path(folder))
        models.append(model.to(torch.device(device)))
        descriptions.append(description)
    first = descriptions[0]["plans"]
    for folder, d in zip(folders, descriptions, strict=True):
        if d["plans"].get("target_spacing") != first.get("target_spacing") or d["plans"].get(
            "classes"
        ) != first.get("classes"):
            raise ValueError(f"{folder}: trained with other plans than {folders[0]}")
    return models, descriptions[0]


def predict_array(
    models: Sequence[torch.nn.Module],
    plans: Mapping[str, Any],
    image: np.ndarray,
    device: torch.device | str = "cpu",
    flips: bool = False,
    overlap: float = 0.5,
    precision: str = "auto",
) -> np.ndarray:
    """Mean softmax of the models over a preprocessed image.

    Args:
        models: networks in eval mode (the folds).
        plans: the task's plans (``patch_size``).
        image: float32 ``(C, *spatial)`` preprocessed.
        device: where to run.
        flips: mirror test-time augmentation along every spatial axis.
        overlap: sliding-window overlap.
        precision: ``auto`` (AMP on CUDA), ``fp32``, ``bf16``, ``fp16``.

    Returns:
        float32 ``(classes, *spatial)``, summing to 1 over classes.
    """
    device = torch.device(device)
    precision = resolve_amp(precision, device)
    total = None
    for model in models:
        prob = image_probabilities(model, image, plans, device, precision, overlap, flips=flips)
        total = prob if total is None else total + prob
    return (total / len(models)).numpy()


def image_probabilities(
    model: torch.nn.Module,
    image: np.ndarray,
    plans: Mapping[str, Any],
    device: torch.device,
    precision: str = "fp32",
    overlap: float = 0.5,
    flips: bool = False,
) -> torch.Tensor:
    """Softmax of one network over a whole preprocessed image: sliding windows of the plans'
    patch (:func:`sliding_probabilities`), or for 2D-on-volume plans (``plans["slices"]``)
    slice by slice (:func:`slice_probabilities`).

    Returns:
        float32 ``(classes, *spatial)`` on the CPU.
    """
    slices = slice_settings(plans)
    if slices is None:
        return sliding_probabilities(
            model, image, plans["patch_size"], device, precision, overlap, flips=flips
        )
    return slice_probabilities(
        model,
        image,
        int(slices["axis_index"]),
        int(slices["context"]),
        plans["patch_size"],
        device,
        precision,
        overlap,
        flips=flips,
    )


#: Slices per forward pass of :func:`slice_probabilities`.
SLICE_BATCH = 16


@torch.no_grad()
def slice_probabilities(
    model: torch.nn.Module,
    image: np.ndarray | torch.Tensor,
    axis: int,
    context: int,
    patch_size: Sequence[int],
    device: torch.device,
    precision: str = "fp32",
    overlap: float = 0.5,
    flips: bool = False,
    batch: int = SLICE_BATCH,
) -> torch.Tensor:
    """Softmax of a 2D network over every slice of a volume, stacked back into it.

    Args:
        model: a 2D network in eval mode, ``C * (2 * context + 1)`` input channels.
        image: ``(C, X, Y, Z)`` preprocessed (canonical order).
        axis: the spatial axis the slices are perpendicular to (:data:`~medcnn.transforms.
            slices.SLICE_AXES`).
        context: neighbouring slices per side as extra channels
            (:func:`~medcnn.transforms.slices.slice_stack`).
        patch_size: the 2D window; a slice larger than it is covered by sliding windows.
        device, precision, overlap: as :func:`sliding_probabilities`.
        flips: also average the slices mirrored along each in-plane axis.
        batch: slices per forward pass.

    Returns:
        float32 ``(classes, X, Y, Z)`` on the CPU.
    """
    volume = image.numpy() if torch.is_tensor(image) else np.asarray(image)
    stack = slice_stack(volume, axis, context)  # (S, C', H, W)
    parts = []
    for start in range(0, stack.shape[0], batch):
        chunk = torch.from_numpy(stack[start : start + batch])
        parts.append(
            _window_probabilities(
                model, chunk, patch_size, device, precision, overlap, len(chunk), flips
            ).numpy()
        )
    return torch.from_numpy(
        np.ascontiguousarray(unstack_slices(np.concatenate(parts), axis), dtype=np.float32)
    )


def to_original_grid(
    array: np.ndarray,
    meta: Mapping[str, Any],
    reference: str | Path | nib.Nifti1Image,
    mode: str = "nearest",
) -> nib.Nifti1Image:
    """Map a preprocessed-space array back onto the ingest NIfTI's grid (shape and affine).

    The inverse of :func:`~medcnn.transforms.segmentation.preprocess_case`'s geometry:
    resampled from the target spacing to the canonical grid (voxel centres, same extent),
    then the canonical reorientation undone. With the target spacing equal to the image's
    own, the round trip of a label map is exact.

    Args:
        array: ``(*spatial)`` or ``(C, *spatial)`` in the preprocessed space (labels as
            integers, probabilities as float).
        meta: ``preprocess_case``'s meta of that image.
        reference: the ingest NIfTI (path or image) whose grid to match.
        mode: ``nearest`` (labels; stored as uint8/int32) or ``linear`` (probabilities,
            float32; channels go last, as NIfTI's 4th axis).

    Returns:
        A NIfTI image with the reference's affine: ``(i, j, k)`` (2D: ``(i, j, 1)``) for one
        channel, ``(i, j, k, C)`` for several.

    Raises:
        SegmentationInputError: the reference's grid is not the one ``meta`` came from.
    """
    ref = reference if isinstance(reference, nib.Nifti1Image) else nib.load(reference)
    dims = int(meta["dims"])
    expected = list(meta["original_shape"])
    ref_shape = list(ref.shape[:3])
    if ref_shape[: len(expected)] != expected or not np.allclose(
        ref.affine, np.array(meta["original_affine"]), atol=1e-4
    ):
        raise SegmentationInputError(
            f"{getattr(ref, 'get_filename', lambda: None)() or 'reference'}: grid "
            f"{ref_shape} does not match the preprocessed image's source {expected}"
        )
    data = np.asarray(array)
    squeeze = data.ndim == dims
    if squeeze:
        data = data[None]
    labels = mode == "nearest"
    if labels:
        data = data.astype(np.int32)
    data = resample(data, meta["canonical_shape"], "nearest" if labels else "linear")
    if dims == 3:
        ornt = np.array(meta["orientation"])
        back = nib.orientations.ornt_transform(
            np.array([[0, 1], [1, 1], [2, 1]], dtype=float), ornt
        )
        data = np.stack([nib.orientations.apply_orientation(c, back) for c in data])
    else:
        data = data[..., None]  # (C, i, j) -> (C, i, j, 1)
    if list(data.shape[1:]) != expected + ([1] if dims == 2 else []):
        raise SegmentationInputError(f"mapped back to {data.shape[1:]}, expected {expected}")
    out = data[0] if squeeze else np.moveaxis(data, 0, -1)
    if labels:
        out = out.astype(np.uint8 if out.max(initial=0) < 256 else np.int32)
    else:
        out = out.astype(np.float32)
    return nifti_on(out, ref.affine)


def nifti_on(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A NIfTI image of ``data`` with ``affine`` as its qform and sform (mm, s)."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img


def predict_probabilities(
    models: Sequence[torch.nn.Module],
    plans: Mapping[str, Any],
    image_path: str | Path | Sequence[str | Path],
    device: torch.device | str = "cpu",
    *,
    flips: bool = False,
    overlap: float = 0.5,
    diameter: float | None = None,
) -> tuple[np.ndarray, nib.Nifti1Image, dict[str, Any]]:
    """Class probabilities of one ingest image on its own grid: preprocessed with the plans,
    predicted (:func:`predict_array`), brought back by :func:`to_original_grid` (linear).

    Instance plans with ``rescale.nucleus_diameter`` predict twice, as Cellpose sizes its
    images: first at the scale of :func:`~medcnn.transforms.nuclei.estimate_diameter` (a
    quick Otsu pass, without mirroring), then, when the median diameter of that pass's
    instances differs from the estimate by more than :data:`RESCALE_TOLERANCE`, again at the
    scale of the measured diameter, unless it differs from the estimate by more than
    :data:`FIRST_PASS_RANGE` times. Only the image types in :data:`FIRST_PASS_TYPES` get the
    first pass; a colour image is predicted once, at its scale-space estimate.
    ``diameter`` skips the first pass. The meta's
    ``nuclei`` says which diameter was used (``diameter_source``: ``estimate``,
    ``first_pass`` or ``given``).

    Returns:
        (float32 ``(classes, i, j)`` for 2D or ``(classes, i, j, k)``, the reference NIfTI
        (the first image file), the preprocessing meta).
    """
    reference = image_path if isinstance(image_path, (str, Path)) else image_path[0]
    ref = nib.load(reference)
    rescale = plans["kind"] == "instance_segmentation" and (plans.get("rescale") or {}).get(
        "nucleus_diameter"
    )

    def predicted(
        prepared: tuple[np.ndarray, dict[str, Any]], mirror: bool
    ) -> tuple[np.ndarray, dict[str, Any]]:
        image, meta = prepared
        prob = predict_array(models, plans, image, device, mirror, overlap)
        prob_img = to_original_grid(prob, meta, ref, mode="linear")
        prob_orig = np.moveaxis(np.asarray(prob_img.dataobj), -1, 0)
        if int(meta["dims"]) == 2:
            prob_orig = prob_orig[..., 0]
        return prob_orig, meta

    def prepared(d: float | None) -> tuple[np.ndarray, dict[str, Any]]:
        image, _, meta = preprocess_case(image_path, None, plans, diameter=d)
        return image, meta

    def once(d: float | None, mirror: bool) -> tuple[np.ndarray, dict[str, Any]]:
        return predicted(prepared(d), mirror)

    if not rescale or diameter is not None:
        return _with_ref(once(diameter, flips), ref)
    first = prepared(None)
    if first[1]["nuclei"].get("type") not in FIRST_PASS_TYPES:
        prob, meta = predicted(first, flips)
        meta["nuclei"]["diameter_source"] = "estimate"
        return prob, ref, meta
    prob, meta = predicted(first, False)
    estimate = meta["nuclei"]["diameter"]
    measured = median_diameter(instances_from_probabilities(prob), min_instances=3)
    ratio = None if measured is None or not estimate else measured / estimate
    believable = ratio is None or 1.0 / FIRST_PASS_RANGE <= ratio <= FIRST_PASS_RANGE
    if (
        measured is not None
        and believable
        and (ratio is None or abs(ratio - 1.0) > RESCALE_TOLERANCE)
    ):
        prob, meta = once(measured, flips)
        meta["nuclei"]["diameter_source"] = "first_pass"
        meta["nuclei"]["estimated_diameter"] = estimate
    else:
        if flips:
            prob, meta = once(estimate, True)
        meta["nuclei"]["diameter_source"] = "estimate"
        if not believable:
            meta["nuclei"]["first_pass_diameter"] = measured
    return prob, ref, meta


#: Relative difference between the estimated and the first pass's measured nucleus diameter
#: above which :func:`predict_probabilities` predicts again at the measured one.
RESCALE_TOLERANCE = 0.1
#: Largest factor by which the first pass may correct the estimate, either way. A first pass
#: whose nuclei are more than 3x smaller than the estimate has broken large textured nuclei
#: into pieces at a scale they were never seen at, and predicting again at the pieces' size
#: only makes more pieces (on DSB 2018's dev set the one such correction among 129 images
#: took a fluorescence image from 18 nuclei to 860 and its F1 to 0); the estimate is kept
#: and the first pass's diameter recorded.
FIRST_PASS_RANGE = 3.0
#: Image types (:func:`medcnn.transforms.nuclei.image_type`) whose estimated diameter the
#: first pass may correct. Not colour: the network breaks the chromatin texture of large
#: stained nuclei into pieces, so its first pass measures pieces. On the DSB 2018 3-fold
#: cross-validation (the same fold models, mirrored predictions) the first pass changed the
#: scale of 12 of the 21 colour images and took their mean F1@0.5 from 0.677 (at the
#: scale-space estimate) to 0.606, while on the 29 fluorescence images it rescaled it took
#: them from 0.792 to 0.811.
FIRST_PASS_TYPES = ("fluorescence", "light_grey")


def _with_ref(
    result: tuple[np.ndarray, dict[str, Any]], ref: nib.Nifti1Image
) -> tuple[np.ndarray, nib.Nifti1Image, dict[str, Any]]:
    return result[0], ref, result[1]


def labels_from_probabilities(
    prob: np.ndarray, plans: Mapping[str, Any], postprocess: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Class labels (argmax, uint8) or, for instance tasks, instance ids (int32, watershed of
    :func:`medcnn.postprocess.instances.instances_from_probabilities` with ``postprocess``)."""
    if plans["kind"] == "instance_segmentation":
        return instances_from_probabilities(prob, **dict(postprocess or {}))
    return prob.argmax(0).astype(np.uint8)


#: The instance post-processing settings :func:`choose_postprocessing` tries.
POSTPROCESS_GRID: dict[str, list[Any]] = {
    "interior_threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "foreground_threshold": [0.4, 0.5, 0.6, 0.7, 0.8],
    "elevation": ["interior", "distance"],
    "min_relative_size": [0.0, 0.1, 0.2],
}


def choose_postprocessing(
    probabilities: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    grid: Mapping[str, Sequence[Any]] | None = None,
    score: str = "aji",
) -> tuple[dict[str, Any], float]:
    """The instance post-processing settings that score best on validation images.

    Thresholds of the watershed decide how touching nuclei are split, and the network's
    calibration decides which thresholds do that well; so they are chosen on the fold's
    validation images (never on the held-out ones), as nnU-Net chooses its post-processing.

    Args:
        probabilities: ``(3, H, W)`` or ``(4, H, W)`` (with touching boundary) per validation image.
        references: ``(H, W)`` instance label images.
        grid: settings to try (default :data:`POSTPROCESS_GRID`), every combination.
        score: the key of :func:`medcnn.metrics.segmentation.instance_metrics` to maximise
            (mean over images).

    Returns:
        (best settings, their mean score).
    """
    return choose_postprocessing_by(probabilities, references, grid, (score,))[score]


def choose_postprocessing_by(
    probabilities: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    grid: Mapping[str, Sequence[Any]] | None = None,
    scores: Sequence[str] = ("aji",),
) -> dict[str, tuple[dict[str, Any], float]]:
    """:func:`choose_postprocessing` for several scores in one pass over the grid (each
    setting's watershed is computed once): ``{score: (best settings, their mean score)}``.
    Ties keep the first setting of the grid's order."""
    import itertools

    from medcnn.metrics.instances import instance_metrics

    grid = dict(grid or POSTPROCESS_GRID)
    keys = list(grid)
    best: dict[str, tuple[float, dict[str, Any]]] = {s: (-1.0, {}) for s in scores}
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, values, strict=True))
        metrics = [
            instance_metrics(instances_from_probabilities(p, **settings), r)
            for p, r in zip(probabilities, references, strict=True)
        ]
        for s in scores:
            mean = float(np.mean([m[s] for m in metrics])) if metrics else 0.0
            if mean > best[s][0]:
                best[s] = (mean, settings)
    return {s: (settings, value) for s, (value, settings) in best.items()}


#: The watershed thresholds whose choice at the edge of the values tried is worth a warning.
THRESHOLD_KEYS = ("interior_threshold", "foreground_threshold")


def at_grid_edge(settings: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[str]:
    """``"key value (the largest|smallest tried)"`` for each threshold of ``settings`` chosen
    at the end of its values in ``grid`` (of more than one value): the best may lie beyond."""
    edges = []
    for key in THRESHOLD_KEYS:
        values = sorted(float(v) for v in grid.get(key, ()))
        if len(values) < 2 or key not in settings:
            continue
        chosen = float(settings[key])
        if chosen in (values[0], values[-1]):
            side = "largest" if chosen == values[-1] else "smallest"
            edges.append(f"{key} {chosen:g} (the {side} tried)")
    return edges


def predict_labels(
    models: Sequence[torch.nn.Module],
    plans: Mapping[str, Any],
    image_path: str | Path | Sequence[str | Path],
    device: torch.device | str = "cpu",
    *,
    postprocess: Mapping[str, Any] | None = None,
    flips: bool = False,
    overlap: float = 0.5,
) -> tuple[nib.Nifti1Image, np.ndarray, dict[str, Any]]:
    """The label map of one ingest image on its own grid.

    Semantic tasks: argmax of the probabilities brought back (linear) to the original grid.
    Instance tasks: the 3- or 4-class probabilities brought back, then the watershed of
    :func:`medcnn.postprocess.instances.instances_from_probabilities` gives one id per
    nucleus (int32, 0 background).

    Args:
        models, plans, image_path, device, flips, overlap: as :func:`predict_probabilities`.
        postprocess: keyword arguments for the instance post-processing.

    Returns:
        (label NIfTI on the ingest grid, probabilities on that grid ``(classes, *spatial)``
        (2D: ``(classes, i, j)``), the preprocessing meta).
    """
    prob, ref, meta = predict_probabilities(
        models, plans, image_path, device, flips=flips, overlap=overlap
    )
    label = labels_from_probabilities(prob, plans, postprocess)
    out = label[..., None] if int(meta["dims"]) == 2 else label
    return nifti_on(out, ref.affine), prob, meta


def resolve_amp(setting: str, device: torch.device) -> str:
    """Inference precision: ``auto`` is bf16 (or fp16) autocast on CUDA and fp32 on a CPU,
    where predictions stay exact (training times bf16 against fp32 instead)."""
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


@torch.no_grad()
def sliding_probabilities(
    model: torch.nn.Module,
    image: np.ndarray | torch.Tensor,
    patch_size: Sequence[int],
    device: torch.device,
    precision: str = "fp32",
    overlap: float = 0.5,
    sw_batch_size: int = 4,
    flips: bool = False,
) -> torch.Tensor:
    """Softmax of a whole image by Gaussian-weighted sliding windows (optionally mirrored).

    Args:
        model: the network, in eval mode.
        image: ``(C, *spatial)`` preprocessed.
        patch_size: the window (the plans' patch).
        device: where to run.
        precision: autocast precision.
        overlap: window overlap fraction.
        sw_batch_size: windows per forward pass.
        flips: test-time augmentation: also average the predictions of the image mirrored
            along each spatial axis (``dims + 1`` passes), in 2D with a square patch the
            image's eight quarter turns and mirrors (the training augmentation's group).

    Returns:
        float32 ``(classes, *spatial)`` on the CPU.
    """
    x = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image)[None]
    return _window_probabilities(
        model, x, patch_size, device, precision, overlap, sw_batch_size, flips
    )[0]


def _window_probabilities(
    model: torch.nn.Module,
    x: torch.Tensor,
    patch_size: Sequence[int],
    device: torch.device,
    precision: str,
    overlap: float,
    sw_batch_size: int,
    flips: bool,
) -> torch.Tensor:
    """:func:`sliding_probabilities` of a batch ``(N, C, *spatial)``: ``(N, classes,
    *spatial)`` float32 on the CPU."""
    x = x.to(device=device, dtype=torch.float32)
    dims = x.ndim - 2
    # (flip axes, transposed): mirrors along each axis, dims + 1 passes; a patch trained with
    # quarter turns averages the eight symmetries of the square (four flips, each transposed).
    variants: list[tuple[tuple[int, ...], bool]] = [((), False)]
    if flips and quarter_turns(patch_size):
        variants = [(f, t) for t in (False, True) for f in flip_sets(2)]
    elif flips:
        variants += [((2 + a,), False) for a in range(dims)]

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            logits = model(patch)
        return torch.softmax(logits.float(), dim=1)

    total = None
    for axes, transposed in variants:
        xin = torch.flip(x, axes) if axes else x
        xin = xin.transpose(2, 3) if transposed else xin
        prob = sliding_window_inference(
            xin,
            roi_size=tuple(int(p) for p in patch_size),
            sw_batch_size=sw_batch_size,
            predictor=predictor,
            overlap=overlap,
            mode="gaussian",
            padding_mode="constant",
        )
        prob = prob.transpose(2, 3) if transposed else prob
        prob = torch.flip(prob, axes) if axes else prob
        total = prob if total is None else total + prob
    return (total / len(variants)).float().cpu()
