from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medcnn.metrics.instances import aji, panoptic_quality
from medcnn.postprocess.instances import (
    instances_from_mask,
    instances_from_probabilities,
    target_from_instances,
)


def touching_discs(shape=(40, 60), centres=((20, 20), (20, 36)), radius=10) -> np.ndarray:
    """Discs of ``radius`` that overlap; each pixel of the union goes to its nearest centre,
    so the two nuclei touch along a straight line."""
    rows, cols = np.indices(shape)
    distances = np.stack([np.hypot(rows - r, cols - c) for r, c in centres])
    nearest = np.argmin(distances, axis=0)
    inside = distances.min(axis=0) <= radius
    return np.where(inside, nearest + 1, 0).astype(np.int32)


def one_hot(target: np.ndarray, classes: int = 3) -> np.ndarray:
    return np.stack([(target == c).astype(np.float32) for c in range(classes)])


def test_target_puts_boundary_between_touching_nuclei():
    instances = np.zeros((10, 12), dtype=np.int32)
    instances[2:8, 2:6] = 4
    instances[2:8, 6:10] = 9
    expected = np.zeros((10, 12), dtype=np.uint8)
    expected[2:8, 2:10] = 2  # each nucleus: a one-pixel ring ...
    expected[3:7, 3:5] = 1  # ... around its interior; columns 5 and 6 (the contact) are 2
    expected[3:7, 7:9] = 1
    target = target_from_instances(instances)
    assert target.dtype == np.uint8
    np.testing.assert_array_equal(target, expected)
    # The interiors are apart: connected components of the interior find both nuclei.
    assert ndimage.label(target == 1)[1] == 2


def test_touching_class_marks_only_where_nuclei_meet():
    instances = np.zeros((10, 14), dtype=np.int32)
    instances[2:8, 2:6] = 4
    instances[2:8, 6:10] = 9  # touches nucleus 4 along columns 5 | 6
    instances[2:5, 11:13] = 2  # alone: a ring of plain boundary, nothing touching
    target = target_from_instances(instances, touching=True)
    expected = target_from_instances(instances).copy()
    expected[2:8, 5:7] = 3  # the contact: one column from each nucleus
    np.testing.assert_array_equal(target, expected)
    assert (target[2:5, 11:13] == 2).all()
    # Wider band: two columns from each side of the contact; a smaller id on either side.
    wide = target_from_instances(instances, boundary_width=2, touching=True)
    assert (wide[4:6, 4:8] == 3).all() and (wide[4:6, 3] == 2).all() and (wide[4:6, 8] == 2).all()
    # City-block distance: (2, 4) is 2 from nucleus 9's (2, 6), (2, 3) is 3.
    assert wide[2, 4] == 3 and wide[2, 3] == 2


def test_instances_from_four_class_probabilities():
    reference = touching_discs()
    target = target_from_instances(reference, touching=True)
    assert (target == 3).sum() > 0
    instances = instances_from_probabilities(one_hot(target, classes=4))
    assert sorted(np.unique(instances)) == [0, 1, 2]
    assert aji(instances, reference) == 1.0
    noisy = one_hot(target, classes=4) * 0.8 + 0.2 / 4
    assert aji(instances_from_probabilities(noisy, elevation="distance"), reference) > 0.95


def test_target_boundary_width_and_image_edge():
    square = np.zeros((13, 13), dtype=np.int32)
    square[2:11, 2:11] = 1  # 9 x 9
    wide = target_from_instances(square, boundary_width=2)
    assert (wide == 1).sum() == 25 and (wide == 2).sum() == 56  # 5 x 5 interior left
    corner = np.zeros((10, 10), dtype=np.int32)
    corner[0:5, 0:5] = 3
    target = target_from_instances(corner)
    # The tile edge is not a boundary: only row 4 and column 4 are.
    assert (target == 1).sum() == 16 and (target[0:4, 0:4] == 1).all()
    assert (target == 2).sum() == 9
    with pytest.raises(ValueError, match="boundary_width"):
        target_from_instances(square, boundary_width=0)
    with pytest.raises(ValueError, match="2D"):
        target_from_instances(square[None])


def test_watershed_splits_touching_discs_that_components_merge():
    reference = touching_discs()
    mask = reference > 0
    assert ndimage.label(mask)[1] == 1  # plain connected components: one object
    instances = instances_from_mask(mask)
    assert instances.dtype == np.int32
    assert sorted(np.unique(instances)) == [0, 1, 2]
    assert (instances > 0).sum() == mask.sum()
    assert aji(instances, reference) > 0.95
    assert panoptic_quality(instances, reference)["tp"] == 2


def test_instances_from_perfect_probabilities_recover_the_nuclei():
    reference = touching_discs()
    instances = instances_from_probabilities(one_hot(target_from_instances(reference)))
    assert instances.dtype == np.int32
    assert sorted(np.unique(instances)) == [0, 1, 2]
    assert aji(instances, reference) == 1.0
    for elevation in ("interior", "distance"):
        noisy = one_hot(target_from_instances(reference)) * 0.8 + 0.2 / 3
        result = instances_from_probabilities(noisy, elevation=elevation)
        assert aji(result, reference) > 0.95


def test_instances_keep_unmarked_blobs_and_drop_specks():
    target = np.zeros((20, 20), dtype=np.uint8)
    target[2:5, 2:5] = 2  # 9 px all boundary: no interior marker, kept as its own nucleus
    target[10, 10:12] = 1  # 2 px: below min_size, dropped
    target[12:18, 12:18] = 2
    target[13:17, 13:17] = 1  # an ordinary nucleus
    instances = instances_from_probabilities(one_hot(target))
    assert sorted(np.unique(instances)) == [0, 1, 2]
    assert instances[10, 10] == 0
    assert len(np.unique(instances[2:5, 2:5])) == 1 and instances[3, 3] > 0
    assert (instances[12:18, 12:18] > 0).all()
    with pytest.raises(ValueError, match=r"\(3, H, W\) .* or \(4, H, W\)"):
        instances_from_probabilities(np.zeros((2, 5, 5)))


def test_slivers_under_a_fraction_of_the_median_nucleus_are_dropped():
    """min_relative_size drops instances under that fraction of the image's median area,
    whatever the magnification; 0 keeps them."""
    target = np.zeros((60, 60), dtype=np.uint8)
    for r0, c0 in [(2, 2), (2, 22), (22, 2), (22, 22)]:  # four 12x12 nuclei (144 px)
        target[r0 : r0 + 12, c0 : c0 + 12] = 2
        target[r0 + 1 : r0 + 11, c0 + 1 : c0 + 11] = 1
    target[45:49, 45:49] = 2  # a 16-px sliver: a ninth of the median nucleus
    kept = instances_from_probabilities(one_hot(target), min_size=8)
    assert kept.max() == 5 and kept[46, 46] > 0
    dropped = instances_from_probabilities(one_hot(target), min_size=8, min_relative_size=0.2)
    assert dropped.max() == 4 and dropped[46, 46] == 0
    np.testing.assert_array_equal(dropped[:40, :40] > 0, kept[:40, :40] > 0)
    assert instances_from_probabilities(one_hot(target), min_relative_size=0.1).max() == 5
