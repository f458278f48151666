"""Nuclei instances: the training target, and instance label images from predictions.

A network cannot output "one id per nucleus" directly, so it learns three classes per pixel
(0 background, 1 nucleus interior, 2 nucleus boundary, the boundary including where nuclei
touch). Interiors of touching nuclei are then separate blobs; each becomes a watershed marker,
and the watershed gives the boundary pixels back to the nucleus they belong to.

Optionally a fourth class, 3 *touching boundary*: the boundary pixels where a nucleus meets
another nucleus (not the background). These few pixels are what splits a clump, and as a class
of their own they get their own Dice term and class weight in the loss, as the touching-border
output of the 2018 Data Science Bowl's winning networks and the separation-border weights of
the original U-Net paper (Ronneberger et al. 2015) emphasise them. At prediction the boundary
is the sum of classes 2 and 3.

Arrays are 2D ``(H, W)`` in any axis order (the functions are symmetric in the two axes);
probabilities are channel first, ``(3, H, W)`` or ``(4, H, W)``. Instance images are int32,
0 background and 1..N sequential ids.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

BACKGROUND, INTERIOR, BOUNDARY, TOUCHING = 0, 1, 2, 3

#: 4-connectivity: touching nuclei must not merge through a diagonal.
_CROSS = ndimage.generate_binary_structure(2, 1)


def _check_2d(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2D (H, W) array, not shape {array.shape}")
    return array


def target_from_instances(
    instances: np.ndarray, boundary_width: int = 1, touching: bool = False
) -> np.ndarray:
    """The 3-class (or with ``touching``, 4-class) target of an instance label image.

    A pixel of a nucleus is *boundary* (2) when a pixel of another label (background or a
    different nucleus) lies within ``boundary_width`` pixels of it (city-block distance), and
    *interior* (1) otherwise. Nuclei that touch therefore meet along a boundary band two
    pixels wide (one from each), and their interiors never touch. The image edge is not a
    boundary: a nucleus cut by the tile border keeps its interior there.

    Args:
        instances: ``(H, W)`` instance label image, 0 background, any positive ids.
        boundary_width: thickness in pixels of the boundary band inside each nucleus.
        touching: boundary pixels with another nucleus (not only background) within
            ``boundary_width`` pixels become class 3 (touching boundary).

    Returns:
        ``(H, W)`` uint8: 0 background, 1 interior, 2 boundary, 3 touching boundary.

    Raises:
        ValueError: not a 2D image, negative ids, or ``boundary_width`` below 1.
    """
    instances = _check_2d(instances, "an instance label image")
    if boundary_width < 1:
        raise ValueError(f"boundary_width {boundary_width} must be at least 1")
    if instances.size and instances.min() < 0:
        raise ValueError("instance label images must not hold negative ids")
    footprint = ndimage.iterate_structure(_CROSS, boundary_width)
    # A pixel is interior when every pixel of its neighbourhood carries its own label, i.e.
    # when the neighbourhood's maximum and minimum both equal it.
    high = ndimage.maximum_filter(instances, footprint=footprint, mode="nearest")
    low = ndimage.minimum_filter(instances, footprint=footprint, mode="nearest")
    foreground = instances > 0
    interior = foreground & (high == instances) & (low == instances)
    target = np.zeros(instances.shape, dtype=np.uint8)
    target[foreground] = BOUNDARY
    target[interior] = INTERIOR
    if touching:
        # Another nucleus nearby: a larger id (the maximum) or a smaller non-zero one (the
        # minimum once the background counts as larger than every id).
        big = np.iinfo(np.int64).max
        low_nucleus = ndimage.minimum_filter(
            np.where(foreground, instances.astype(np.int64), big),
            footprint=footprint,
            mode="nearest",
        )
        near_other = (high > instances) | (low_nucleus < instances)
        target[foreground & ~interior & near_other] = TOUCHING
    return target


def _finish(
    instances: np.ndarray, foreground: np.ndarray, min_size: int, min_relative_size: float = 0.0
) -> np.ndarray:
    """Add foreground blobs that got no marker as instances of their own, drop instances
    smaller than ``min_size`` pixels (and than ``min_relative_size`` times the median area of
    those left), and number the rest 1..N."""
    unmarked, n_unmarked = ndimage.label(foreground & (instances == 0), structure=_CROSS)
    if n_unmarked:
        offset = int(instances.max())
        instances = np.where(unmarked > 0, unmarked + offset, instances)
    sizes = np.bincount(instances.ravel())
    keep = sizes >= min_size
    keep[0] = False
    if min_relative_size > 0 and keep.any():
        keep &= sizes >= float(min_relative_size) * float(np.median(sizes[keep]))
    table = np.zeros(sizes.size, dtype=np.int32)
    table[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return table[instances]


def instances_from_probabilities(
    probabilities: np.ndarray,
    interior_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    min_marker_size: int = 4,
    min_size: int = 8,
    elevation: Literal["interior", "distance"] = "interior",
    min_relative_size: float = 0.0,
) -> np.ndarray:
    """An instance label image from background/interior/boundary(/touching) probabilities.

    1. Foreground: interior + boundary (+ touching) probability above ``foreground_threshold``.
    2. Markers: 4-connected blobs of interior probability above ``interior_threshold``
       (inside the foreground) of at least ``min_marker_size`` pixels; a smaller blob is
       noise that would split a nucleus in two.
    3. Watershed (``skimage.segmentation.watershed``) from the markers over the foreground,
       on the negated interior probability (``elevation="interior"``: boundary pixels go to
       the nucleus whose interior is most probable next to them) or on the negated distance
       to the background (``"distance"``).
    4. Foreground blobs holding no marker (a nucleus too small to have an interior) become
       instances of their own; instances under ``min_size`` pixels are dropped, and with
       ``min_relative_size`` those under that fraction of the image's median instance area
       (debris and watershed slivers, whatever the magnification); ids are renumbered 1..N.

    Args:
        probabilities: ``(3, H, W)`` softmax output, channels background, interior, boundary,
            or ``(4, H, W)`` with touching boundary (counted as boundary).

    Returns:
        ``(H, W)`` int32 instance label image.

    Raises:
        ValueError: the array is not ``(3, H, W)`` or ``(4, H, W)``, or the elevation is
            unknown.
    """
    from skimage.segmentation import watershed

    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 3 or probabilities.shape[0] not in (3, 4):
        raise ValueError(
            f"probabilities must be (3, H, W) background/interior/boundary or (4, H, W) with "
            f"touching boundary, not shape {probabilities.shape}"
        )
    interior = probabilities[INTERIOR]
    foreground = probabilities[INTERIOR:].sum(axis=0) > foreground_threshold
    markers, _ = ndimage.label((interior > interior_threshold) & foreground, structure=_CROSS)
    sizes = np.bincount(markers.ravel())
    markers[sizes[markers] < min_marker_size] = 0
    if elevation == "interior":
        surface = -interior
    elif elevation == "distance":
        surface = -ndimage.distance_transform_edt(foreground)
    else:
        raise ValueError(f"elevation {elevation!r} must be 'interior' or 'distance'")
    instances = watershed(surface, markers, mask=foreground, connectivity=1)
    return _finish(instances.astype(np.int64), foreground, min_size, min_relative_size)


def instances_from_mask(mask: np.ndarray, h: float = 2.0, min_size: int = 8) -> np.ndarray:
    """Split a binary nuclei mask into instances by a distance-transform watershed.

    The classic no-learning baseline, and the fallback for a model that predicts only the
    foreground. Markers are the h-maxima of the distance to the background: each nucleus
    centre is a maximum, and two touching nuclei are split when the neck between them is
    more than ``h`` pixels narrower (in distance) than their centres.

    Args:
        mask: ``(H, W)`` binary mask (nonzero = nucleus).
        h: minimum depth in pixels of the distance valley between two markers.
        min_size: instances smaller than this many pixels are dropped.

    Returns:
        ``(H, W)`` int32 instance label image, ids 1..N.

    Raises:
        ValueError: the mask is not 2D or ``h`` is not positive.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    foreground = _check_2d(mask, "a nuclei mask") != 0
    if h <= 0:
        raise ValueError(f"h {h} must be positive")
    distance = ndimage.distance_transform_edt(foreground)
    peaks = h_maxima(distance, h) > 0
    markers, _ = ndimage.label(peaks & foreground, structure=np.ones((3, 3), dtype=bool))
    instances = watershed(-distance, markers, mask=foreground, connectivity=1)
    return _finish(instances.astype(np.int64), foreground, min_size)


def median_diameter(instances: np.ndarray, min_instances: int = 1) -> float | None:
    """The median equivalent diameter (``2 sqrt(area / pi)``, pixels) of an instance image's
    objects; None with fewer than ``min_instances`` objects (the typical nucleus size of a
    Cellpose-style rescaling, :mod:`medcnn.transforms.nuclei`)."""
    instances = _check_2d(instances, "an instance label image")
    sizes = np.bincount(instances.ravel().astype(np.int64))[1:]
    sizes = sizes[sizes > 0]
    if sizes.size < max(1, int(min_instances)):
        return None
    return float(np.median(2.0 * np.sqrt(sizes / np.pi)))
