"""Connected-component clean-up of semantic masks, on small arrays counted by hand."""

from __future__ import annotations

import numpy as np

from medcnn.postprocess.components import drop_small, keep_largest


def _volume() -> np.ndarray:
    label = np.zeros((6, 6, 6), np.uint8)
    label[0:2, 0:2, 0:2] = 1  # 8 voxels
    label[4, 4, 4] = 1  # 1 voxel, touches nothing
    label[5, 5, 5] = 1  # 1 voxel, diagonal neighbour of (4, 4, 4): same object (26-connected)
    label[0:3, 4:6, 0] = 2  # 6 voxels of class 2
    label[5, 0, 5] = 2  # 1 voxel of class 2
    return label


def test_drop_small_counts_objects_with_full_connectivity():
    label = _volume()
    out = drop_small(label, 2)
    assert out.dtype == label.dtype
    assert (out == 1).sum() == 8 + 2  # the diagonal pair is one object of 2 voxels
    assert (out == 2).sum() == 6
    out = drop_small(label, 7)
    assert (out == 1).sum() == 8 and (out == 2).sum() == 0
    np.testing.assert_array_equal(drop_small(label, 0), label)


def test_keep_largest_keeps_one_object_per_class():
    label = _volume()
    out = keep_largest(label)
    assert (out == 1).sum() == 8 and out[0, 0, 0] == 1 and out[4, 4, 4] == 0
    assert (out == 2).sum() == 6 and out[5, 0, 5] == 0
    only_one = keep_largest(label, classes=[2])
    assert (only_one == 1).sum() == 10 and (only_one == 2).sum() == 6
    np.testing.assert_array_equal(keep_largest(np.zeros((3, 3), np.uint8)), 0)


def test_keep_largest_with_face_connectivity_splits_diagonal_neighbours():
    label = np.zeros((5, 5), np.uint8)
    label[0, 0] = label[1, 1] = label[2, 2] = 1  # one object diagonally, three through faces
    label[4, 0:2] = 1  # two face-connected pixels: the largest when diagonals do not join
    assert (keep_largest(label) == 1).sum() == 3
    faces = keep_largest(label, connectivity=1)
    assert faces[4, 0] == faces[4, 1] == 1 and faces.sum() == 2
