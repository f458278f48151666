"""Probability and uncertainty maps for segmentation by test-time augmentation (TTA).

Each augmentation is a flip, which is exactly invertible, so every prediction is mapped back
to the original grid without resampling. The voxel-wise mean of the class probabilities is
the probability map; their variance is the uncertainty map (high where the network changes
its mind when the image is merely mirrored, typically at boundaries and on unfamiliar
tissue).
"""

from __future__ import annotations

import numpy as np
import torch

from medcnn.transforms.symmetry import flip_sets


def tta_uncertainty(
    model: torch.nn.Module,
    image: np.ndarray,
    max_augmentations: int | None = None,
    activation: str = "sigmoid",
) -> tuple[np.ndarray, np.ndarray]:
    """Probability and TTA-variance maps of a segmentation network for one image.

    Args:
        model: a segmentation network in eval mode, ``(B, C_in, *spatial)`` to logits
            ``(B, K, *spatial)``.
        image: float32 ``(C_in, *spatial)`` (2D or 3D, channel first).
        max_augmentations: use only the first flips (identity first); all ``2**dims`` when
            None.
        activation: ``sigmoid`` (independent classes) or ``softmax`` (exclusive classes).

    Returns:
        ``(probability, variance)``, both float32 ``(K, *spatial)``; probability in 0..1,
        variance in 0..0.25.

    Raises:
        ValueError: unknown activation.
    """
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"activation must be sigmoid or softmax, not {activation!r}")
    x = torch.as_tensor(image, dtype=torch.float32).unsqueeze(0)
    flips = flip_sets(x.ndim - 2, max_augmentations)
    batch = torch.cat([torch.flip(x, f) if f else x for f in flips])
    with torch.no_grad():
        logits = model(batch)
    probs = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=1)
    # Undo each flip (a flip is its own inverse) before comparing the predictions.
    back = torch.stack(
        [torch.flip(p, [a - 1 for a in f]) if f else p for p, f in zip(probs, flips, strict=True)]
    )
    mean = back.mean(dim=0)
    var = back.var(dim=0, unbiased=False)
    return mean.numpy().astype(np.float32), var.numpy().astype(np.float32)
