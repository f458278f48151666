from __future__ import annotations

import numpy as np
import pytest
import torch

from medcnn.saliency.uncertainty import tta_uncertainty
from medcnn.transforms.symmetry import flip_sets


class Threshold(torch.nn.Module):
    """Voxel-wise segmentation ``10 * (x - 0.5)``: flip-equivariant, so TTA agrees."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * (x - 0.5)


class LeftBiased(torch.nn.Module):
    """Adds a bias that grows along axis i: mirrored inputs disagree, most at the edges."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-2, 2, x.shape[2]).view(1, 1, -1, *[1] * (x.ndim - 3))
        return 10 * (x - 0.5) + ramp


def test_flip_sets_start_with_identity_and_cover_all_axes():
    assert flip_sets(2) == [(), (2,), (3,), (2, 3)]
    assert len(flip_sets(3)) == 8
    assert flip_sets(3, 2) == [(), (2,)]


def test_equivariant_model_has_no_uncertainty():
    image = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    prob, var = tta_uncertainty(Threshold(), image)
    assert prob.shape == var.shape == (1, 8, 8)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-10 * (image - 0.5))), atol=1e-6)
    assert var.max() < 1e-10


def test_position_dependent_model_is_uncertain_where_flips_disagree():
    image = np.full((1, 9, 4, 4), 0.5, np.float32)  # 3D, every voxel at the decision point
    prob, var = tta_uncertainty(LeftBiased(), image)
    # the centre along i gets no bias under any flip; the edges get +2 or -2
    assert var[0, 4].max() < 1e-10
    assert var[0, 0].min() == pytest.approx(var[0, 8].min())
    expected = np.var([1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))])
    assert var[0, 0, 0, 0] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(prob, 0.5, atol=1e-6)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="sigmoid or softmax"):
        tta_uncertainty(Threshold(), np.zeros((1, 4, 4), np.float32), activation="relu")
