"""Saliency maps of one image: Grad-CAM, Grad-CAM++ and occlusion sensitivity.

All three come from :mod:`monai.visualize` and work for 2D and 3D networks alike. Every map
is returned in the network's input grid, normalised to 0..1 with the most salient voxel at 1,
so maps of different methods and folds can be averaged and compared.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from monai.visualize import GradCAM, GradCAMpp, OcclusionSensitivity

from medcnn.hardware import model_device

#: Method names accepted in ``tasks.<task>.saliency.methods``.
METHODS = ("gradcam", "gradcampp", "occlusion")


def minmax_normalise(heat: torch.Tensor) -> torch.Tensor:
    """Scale each map of a batch ``(B, 1, *spatial)`` to 0..1, the most salient voxel at 1.

    MONAI's ``default_normalizer`` maps the maximum to 0 (it flips magnitudes), which would
    paint the least salient region hottest; this keeps the usual reading.
    """
    flat = heat.reshape(heat.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, *[1] * (heat.ndim - 1))
    span = (flat.max(dim=1).values.view(-1, *[1] * (heat.ndim - 1)) - low).clamp_min(1e-12)
    return (heat - low) / span


#: One Grad-CAM object per (model, layer): MONAI registers hooks on the target layer when a
#: CAM is made and never removes them, so a process explaining many images reuses it.
_CAMS: dict[tuple[int, str], tuple[torch.nn.Module, GradCAM]] = {}

_CAM_CLASSES = {"gradcam": GradCAM, "gradcampp": GradCAMpp}


def _cam(model: torch.nn.Module, layer: str) -> GradCAM:
    key = (id(model), layer)
    if key not in _CAMS or _CAMS[key][0] is not model:
        if len(_CAMS) >= 16:
            _CAMS.clear()
        cam = GradCAM(nn_module=model, target_layers=layer, postprocessing=minmax_normalise)
        _CAMS[key] = (model, cam)
    return _CAMS[key][1]


class _LastPass:
    """Stands in for MONAI's hooked model: returns the logits, activations and gradients of
    the pass already made, so Grad-CAM and Grad-CAM++ (which differ only in how they weigh
    the same gradients) share one forward and one backward pass."""

    def __init__(self, hooks: Any, result: tuple) -> None:
        self._hooks, self._result = hooks, result

    def __call__(self, *args: Any, **kwargs: Any) -> tuple:
        return self._result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hooks, name)


def cam_maps(
    model: torch.nn.Module,
    image: np.ndarray,
    layer: str,
    class_index: int = 0,
    methods: Sequence[str] = ("gradcam",),
) -> dict[str, np.ndarray]:
    """Grad-CAM and/or Grad-CAM++ of one image from one forward and one backward pass.

    Args:
        model: a classifier in eval mode, ``(B, C, *spatial)`` to logits ``(B, K)``.
        image: float32 ``(C, *spatial)``, channel first, 2D or 3D.
        layer: dotted name of the target layer (see :mod:`medcnn.saliency.layers`).
        class_index: output logit to explain.
        methods: any of ``gradcam``, ``gradcampp``.

    Returns:
        ``{method: float32 (*spatial)}``, each 0..1 (all zeros when the gradient is zero),
        computed with MONAI's own ``compute_map`` of each method.
    """
    cam = _cam(model, layer)
    x = torch.as_tensor(image[None], dtype=torch.float32).to(model_device(model))
    shim = SimpleNamespace(
        nn_module=_LastPass(cam.nn_module, cam.nn_module(x, class_idx=class_index))
    )
    out = {}
    for method in methods:
        raw = _CAM_CLASSES[method].compute_map(shim, x, class_idx=class_index)
        heat = cam._upsample_and_post_process(raw, x)
        out[method] = heat[0, 0].detach().cpu().numpy().astype(np.float32)
    return out


def cam_map(
    model: torch.nn.Module,
    image: np.ndarray,
    layer: str,
    class_index: int = 0,
    method: str = "gradcam",
) -> np.ndarray:
    """Grad-CAM or Grad-CAM++ of one image; see :func:`cam_maps`."""
    return cam_maps(model, image, layer, class_index, (method,))[method]


def gradcam_map(
    model: torch.nn.Module, image: np.ndarray, layer: str, class_index: int = 0
) -> np.ndarray:
    """Grad-CAM of one image; see :func:`cam_map`."""
    return cam_map(model, image, layer, class_index, "gradcam")


def occlusion_map(
    model: torch.nn.Module,
    image: np.ndarray,
    class_index: int = 0,
    mask_size: int | Sequence[int] = 16,
    overlap: float = 0.25,
    batch: int = 16,
) -> np.ndarray:
    """Occlusion sensitivity: how much the class probability drops when a patch is hidden.

    Args:
        model: a classifier in eval mode (logits; a sigmoid turns them into probabilities,
            since MONAI's default softmax is constant for a single logit).
        image: float32 ``(C, *spatial)``.
        class_index: output to explain.
        mask_size: patch side in voxels of the network grid (clipped to the image).
        overlap: overlap of neighbouring patches, 0..1 (more: finer map, more passes).
        batch: occluded images per forward pass.

    Returns:
        float32 ``(*spatial)``, 0..1: the drop of the probability where the patch covered
        a voxel (drops only; a rise means the patch hid evidence against the class).
    """
    spatial = image.shape[1:]
    sizes = [mask_size] * len(spatial) if isinstance(mask_size, int) else list(mask_size)
    sizes = [max(1, min(int(s), int(d))) for s, d in zip(sizes, spatial, strict=True)]
    occ = OcclusionSensitivity(
        nn_module=model,
        mask_size=sizes,
        n_batch=batch,
        verbose=False,
        # the image mean hides a patch without inventing texture (a noise patch would add
        # evidence of its own)
        mode="mean_img",
        overlap=overlap,
        activate=torch.sigmoid,
    )
    x = torch.as_tensor(image[None], dtype=torch.float32).to(model_device(model))
    with torch.no_grad(), warnings.catch_warnings():
        # MONAI indexes with lists, which torch deprecates; one warning per patch floods logs
        warnings.filterwarnings(
            "ignore", message="Using a non-tuple sequence", category=UserWarning
        )
        occluded, _ = occ(x)
        p0 = torch.sigmoid(model(x))[0, class_index]
    # MONAI >= 1.3 returns (B, classes, *spatial); older releases (B, C, *spatial, classes).
    if occluded.ndim == x.ndim:
        occluded_p = occluded[0, class_index]
    else:
        occluded_p = occluded[0, 0, ..., class_index]
    drop = (p0.float() - occluded_p.float()).clamp_min(0)
    return minmax_normalise(drop[None, None])[0, 0].cpu().numpy().astype(np.float32)


def saliency_map(
    model: torch.nn.Module,
    image: np.ndarray,
    method: str,
    layer: str,
    class_index: int = 0,
    occlusion_mask_size: int = 16,
    occlusion_overlap: float = 0.25,
) -> np.ndarray:
    """One saliency map by method name (see :data:`METHODS`); float32 ``(*spatial)`` 0..1.

    Raises:
        ValueError: unknown method.
    """
    if method in ("gradcam", "gradcampp"):
        return cam_map(model, image, layer, class_index, method)
    if method == "occlusion":
        return occlusion_map(model, image, class_index, occlusion_mask_size, occlusion_overlap)
    raise ValueError(f"unknown saliency method {method!r} (known: {', '.join(METHODS)})")
