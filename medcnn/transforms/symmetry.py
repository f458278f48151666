"""Symmetries shared by training's augmentation and prediction's test-time augmentation.

Pure Python (no MONAI), so saliency and inference import it without the transform stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations


def flip_sets(dims: int, max_augmentations: int | None = None) -> list[tuple[int, ...]]:
    """Axis sets to flip, identity first: all ``2**dims`` combinations of spatial axes.

    Axes are tensor axes of a ``(B, C, *spatial)`` batch (spatial axes start at 2).
    """
    axes = tuple(range(2, 2 + dims))
    sets = [c for r in range(dims + 1) for c in combinations(axes, r)]
    return sets[:max_augmentations] if max_augmentations else sets


def quarter_turns(patch: Sequence[int]) -> bool:
    """Whether training augments with quarter turns: 2D square patches only (a turned 48x32
    patch would not batch). Prediction's test-time augmentation follows the same rule."""
    return len(patch) == 2 and patch[0] == patch[1]
