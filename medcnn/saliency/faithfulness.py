"""How far a saliency map can be trusted: ROAD-style removal with noise-free imputation.

Remove And Debias (Rong et al., ICML 2022): remove a fraction of the pixels in saliency
order and watch the predicted probability. If the map is faithful, removing the *most*
salient pixels (MoRF) lowers the probability much more than removing the *least* salient
ones (LeRF). Removed pixels are not set to zero, which would draw a mask-shaped edge the
network can read ("the class leaks through the mask"); they are filled by harmonic
interpolation from their kept neighbours (ROAD's linear imputation, solved here by Jacobi
iterations), which is smooth and carries no noise. Works for 2D and 3D alike.

The score is the mean over fractions of ``p(LeRF) - p(MoRF)``, in probability units
(-1..1): around 0 for a map that points nowhere in particular, clearly positive for a map
that found the evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Fractions of pixels removed; few, so a score costs one batch of ``2 * len`` images.
DEFAULT_FRACTIONS = (0.05, 0.1, 0.2, 0.3)


def _window_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over each voxel's 3^d window (zeros outside), ``x`` of shape ``(B, C, *spatial)``.

    Separable shifted adds: several times faster on CPU than ``avg_pool`` for one channel.
    """
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        pad = [0, 0] * (x.ndim - 1 - axis) + [1, 1]
        p = F.pad(x, pad)
        x = p.narrow(axis, 0, n) + p.narrow(axis, 1, n) + p.narrow(axis, 2, n)
    return x


def impute(image: torch.Tensor, removed: torch.Tensor, iterations: int = 60) -> torch.Tensor:
    """Fill removed voxels from their neighbours (harmonic interpolation), noise free.

    Args:
        image: ``(B, C, *spatial)`` float.
        removed: bool ``(B, 1, *spatial)``, True where the voxel is removed.
        iterations: Jacobi sweeps; holes wider than about ``iterations`` voxels are filled
            towards the kept voxels' mean rather than fully interpolated.

    Returns:
        ``(B, C, *spatial)``: kept voxels unchanged, removed ones interpolated.
    """
    dims = image.ndim - 2
    keep = (~removed).to(image.dtype)
    # Start from the mean of kept voxels so large holes converge to a neutral value.
    kept_mean = (image * keep).flatten(2).sum(-1) / keep.flatten(2).sum(-1).clamp_min(1)
    filled = torch.where(removed, kept_mean.view(*kept_mean.shape, *[1] * dims), image)
    # One sweep: kept voxels keep their value, removed ones take the mean of their 3^d
    # window (windows cut by the edge average over the voxels inside), as one fused
    # multiply-add over a precomputed weight: the hot loop of ROAD on CPU.
    weight = (1.0 - keep) / _window_sum(torch.ones_like(image[:1, :1]))
    fixed = image * keep
    for _ in range(iterations):
        filled = torch.addcmul(fixed, _window_sum(filled), weight)
    return filled


def removal_batch(
    image: torch.Tensor, heat: torch.Tensor, fractions: Sequence[float], iterations: int = 60
) -> torch.Tensor:
    """The images with the most (MoRF) then least (LeRF) salient fractions imputed.

    Args:
        image: ``(C, *spatial)``.
        heat: ``(*spatial)`` saliency, higher = more salient.
        fractions: shares of voxels removed, each in (0, 1).

    Returns:
        ``(2 * len(fractions), C, *spatial)``: MoRF for each fraction, then LeRF.
    """
    flat = heat.flatten()
    n = flat.numel()
    # A stable argsort with a tiny deterministic jitter, so flat maps still rank the same
    # way every run instead of by memory order.
    order = torch.argsort(flat + torch.linspace(0, 1e-6, n, dtype=flat.dtype), descending=True)
    masks = []
    for most in (True, False):
        for f in fractions:
            k = max(1, int(round(f * n)))
            chosen = order[:k] if most else order[n - k :]
            m = torch.zeros(n, dtype=torch.bool)
            m[chosen] = True
            masks.append(m.view(1, *heat.shape))
    removed = torch.stack(masks)
    batch = image.unsqueeze(0).expand(len(masks), *image.shape)
    return impute(batch, removed, iterations)


def road_score(
    probability: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    heat: np.ndarray,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    iterations: int = 60,
    base: float | None = None,
) -> dict[str, object]:
    """Faithfulness of one saliency map.

    Args:
        probability: maps a batch ``(B, C, *spatial)`` to the explained class's
            probability ``(B,)`` (e.g. the fold ensemble's mean sigmoid).
        image: ``(C, *spatial)`` float32, as the network takes it.
        heat: ``(*spatial)`` saliency map in the same grid.
        fractions: shares of voxels removed.
        base: the probability of the untouched image when already known (several maps of
            one image share it); computed here otherwise.

    Returns:
        ``{"score", "probability", "fractions", "morf", "lerf"}``: the score (mean of
        ``lerf - morf``), the probability of the untouched image, and the probability after
        removing each fraction of the most / least salient voxels.

    Raises:
        ValueError: ``heat`` does not match the image's spatial shape.
    """
    if tuple(heat.shape) != tuple(image.shape[1:]):
        raise ValueError(f"saliency map {heat.shape} does not match image {image.shape[1:]}")
    x = torch.as_tensor(image, dtype=torch.float32)
    batch = removal_batch(x, torch.as_tensor(heat, dtype=torch.float32), fractions, iterations)
    with torch.no_grad():
        inputs = batch if base is not None else torch.cat([x.unsqueeze(0), batch])
        p = probability(inputs).detach().cpu().double().numpy()
    if base is None:
        base, p = float(p[0]), p[1:]
    n = len(fractions)
    morf, lerf = p[:n], p[n:]
    return {
        "score": float(np.mean(lerf - morf)),
        "probability": float(base),
        "fractions": [float(f) for f in fractions],
        "morf": [float(v) for v in morf],
        "lerf": [float(v) for v in lerf],
    }
