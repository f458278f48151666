"""Slice-by-slice prediction of 2D-on-volume plans: the slices are the canonical grid's,
their context channels the neighbouring slices, and the labels land on the voxels of an
oblique, flipped, anisotropic ingest grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medcnn.inference.segmentation import predict_labels
from medcnn.transforms.slices import slice_stack, unstack_slices
from tests.inference.test_segmentation import oblique_affine
from tests.planning.settings import plan


class MiddleChannel(torch.nn.Module):
    """A stand-in 2D network: foreground logit = the middle input channel (the slice itself
    among its context slices) minus 1; records the input shapes it is given."""

    def __init__(self, context: int) -> None:
        super().__init__()
        self.context = context
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        fg = x[:, self.context : self.context + 1] - 1.0
        return torch.cat([torch.zeros_like(fg), fg], dim=1)


def test_context_channels_are_the_neighbouring_slices():
    volume = np.broadcast_to(np.arange(5, dtype=np.float32), (2, 3, 4, 5)).copy()
    volume[1] += 10.0  # the second image channel
    stack = slice_stack(volume, axis=2, context=1)
    assert stack.shape == (5, 6, 3, 4)
    # channel c * 3 + j is image channel c at offset j - 1, the ends repeated
    assert [float(stack[0, j, 0, 0]) for j in range(6)] == [0, 0, 1, 10, 10, 11]
    assert [float(stack[4, j, 0, 0]) for j in range(6)] == [3, 4, 4, 13, 14, 14]
    assert [float(stack[2, j, 0, 0]) for j in range(6)] == [1, 2, 3, 11, 12, 13]
    # per-slice outputs go back to the volume's order
    np.testing.assert_array_equal(unstack_slices(stack[:, [1, 4]], axis=2), volume)
    sagittal = slice_stack(volume, axis=0, context=0, index=[2])
    np.testing.assert_array_equal(sagittal[0], volume[:, 2])


@pytest.mark.parametrize(("axis", "in_plane"), [("axial", (30, 24)), ("coronal", (30, 11))])
def test_slices_land_on_the_ingest_voxels_of_an_oblique_grid(tmp_path, axis, in_plane):
    shape = (30, 11, 24)
    rng = np.random.default_rng(4)
    label = np.zeros(shape, np.uint8)
    label[5:20, 2:8, 4:15] = 1
    # isolated voxels: an off-by-one or a transposed slice shows
    label[rng.random(shape) < 0.03] = 1
    image = (rng.normal(100.0, 1.0, shape) + 400.0 * label).astype(np.float32)
    affine = oblique_affine()  # 0.9 x 3.5 x 1.3 mm, axes permuted and flipped, rotated
    paths = {}
    for name, data in (("image", image), ("label", label)):
        paths[name] = str(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, affine), paths[name])
    slices = {"enabled": True, "axis": axis, "context": 1, "foreground_fraction": 0.5}
    plans = plan("t", [paths], modalities=["MR"], slices=slices, batch_size=4)
    # canonical order: (30, 24, 11) at 0.9 x 1.3 x 3.5 mm; axial slices are 30 x 24
    assert plans["target_spacing"] == pytest.approx([0.9, 1.3, 3.5])
    model = MiddleChannel(context=1)
    label_img, prob, meta = predict_labels([model], plans, paths["image"], flips=True)
    assert meta["canonical_shape"] == [30, 24, 11]
    assert {s[1:] for s in model.shapes} <= {(3, *plans["patch_size"])}
    n_slices = 11 if axis == "axial" else 24
    assert sum(s[0] for s in model.shapes) >= n_slices
    assert all(p >= n for p, n in zip(plans["patch_size"], in_plane, strict=True))
    np.testing.assert_array_equal(np.asarray(label_img.dataobj), label)
    np.testing.assert_allclose(label_img.affine, affine, atol=1e-6)
    assert prob.shape == (2, *shape)
