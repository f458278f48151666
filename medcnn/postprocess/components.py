"""Connected-component clean-up of semantic label maps (lesions, tumours).

Two rules a user picks in ``segmentation:`` of a task: ``min_size`` drops objects smaller
than a number of voxels (speckle), ``largest_component`` keeps only the largest connected
object of each class (for structures known to be one object, such as a whole brain tumour;
nnU-Net's "keep largest component" post-processing). Both work on any dimensionality, with
full connectivity (26 neighbours in 3D), and keep the class value of what they keep.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def connected_components(
    mask: np.ndarray, connectivity: int | None = None
) -> tuple[np.ndarray, int]:
    """Labels ``1..n`` of the connected objects of ``mask`` (non-zero = in), and ``n``.

    ``connectivity`` is the neighbourhood rank: 1 joins voxels through faces only (6
    neighbours in 3D), None through faces, edges and corners (26 in 3D).
    """
    rank = mask.ndim if connectivity is None else connectivity
    structure = ndimage.generate_binary_structure(mask.ndim, rank)
    labels, n = ndimage.label(mask != 0, structure=structure)
    return labels, int(n)


def drop_small(label: np.ndarray, min_size: int) -> np.ndarray:
    """``label`` with every connected foreground object of fewer than ``min_size`` voxels
    set to 0 (objects span classes: a lesion of two touching classes is one object)."""
    label = np.asarray(label)
    if min_size <= 1:
        return label.copy()
    components, n = connected_components(label > 0)
    if n == 0:
        return label.copy()
    sizes = np.bincount(components.ravel())
    small = sizes < min_size
    small[0] = False
    return np.where(small[components], 0, label).astype(label.dtype)


def keep_largest(
    label: np.ndarray, classes: list[int] | None = None, connectivity: int | None = None
) -> np.ndarray:
    """``label`` with, for each class in ``classes`` (default: every non-zero value), only
    its largest connected component kept (ties: the first in scan order); others set to 0.
    ``connectivity`` as :func:`connected_components` (1: through faces only)."""
    label = np.asarray(label)
    out = label.copy()
    for value in classes if classes is not None else np.unique(label[label > 0]).tolist():
        components, n = connected_components(label == value, connectivity)
        if n <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        out[(components > 0) & (components != sizes.argmax())] = 0
    return out
