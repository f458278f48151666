from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.networks.nets import DenseNet121
from monai.visualize import GradCAM, GradCAMpp

from medcnn.saliency.cam import cam_maps, gradcam_map, minmax_normalise, saliency_map
from medcnn.saliency.layers import probe_target_layer, target_layer
from tests.saliency.toy import BrightSpotDetector, faithful_detector, planted_image


def test_gradcam_lands_on_the_planted_evidence():
    image = np.zeros((1, 32, 32), dtype=np.float32)
    image[0, 20:26, 4:10] = 1.0  # the only evidence
    image += np.random.default_rng(0).random(image.shape).astype(np.float32) * 0.3
    heat = gradcam_map(BrightSpotDetector().eval(), image, "relu")
    assert heat.shape == (32, 32)
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    i, j = np.unravel_index(np.argmax(heat), heat.shape)
    assert 20 <= i < 26 and 4 <= j < 10
    assert heat[20:26, 4:10].mean() > 5 * heat[:16, 16:].mean()


def test_one_shared_pass_gives_monai_gradcam_and_gradcampp_exactly():
    torch.manual_seed(0)
    model = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2).eval()
    image = np.random.default_rng(1).random((1, 64, 64)).astype(np.float32)
    layer = "class_layers.relu"
    shared = cam_maps(model, image, layer, 1, ("gradcam", "gradcampp"))
    for method, kind in (("gradcam", GradCAM), ("gradcampp", GradCAMpp)):
        alone = kind(nn_module=model, target_layers=layer, postprocessing=minmax_normalise)
        reference = alone(x=torch.as_tensor(image[None]), class_idx=1)[0, 0].detach().numpy()
        np.testing.assert_allclose(shared[method], reference, atol=1e-6)
        assert shared[method].max() == pytest.approx(1.0)
    # the two weightings differ: a shared pass must not hand one map out twice
    assert np.abs(shared["gradcam"] - shared["gradcampp"]).max() > 1e-3


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "occlusion"])
def test_every_method_finds_the_pattern_in_2d_and_3d(method, dims):
    image, where = planted_image(dims)
    heat = saliency_map(faithful_detector(dims), image, method, "relu", occlusion_mask_size=4)
    assert heat.shape == image.shape[1:]
    assert heat.dtype == np.float32
    assert heat.max() == pytest.approx(1.0) and heat.min() == pytest.approx(0.0)
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert all(s.start - 2 <= p < s.stop + 2 for p, s in zip(peak, where, strict=True))
    outside = np.ones(heat.shape, bool)
    outside[where] = False
    assert heat[where].mean() > 3 * heat[outside].mean()


def test_unknown_method_is_a_clear_error():
    image, _ = planted_image()
    with pytest.raises(ValueError, match="unknown saliency method 'lime'"):
        saliency_map(faithful_detector(), image, "lime", "relu")


def test_target_layer_probe_agrees_with_the_known_densenet_layer():
    torch.manual_seed(0)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1)
    assert probe_target_layer(net, 1, (64, 64)) == "class_layers.relu"
    assert target_layer(net, "densenet121", 1, (64, 64)) == "class_layers.relu"
    # at 32 px the known layer is pooled to 1x1: the last layer still 4x4 is taken instead
    assert target_layer(net, "densenet121", 1, (32, 32)) == "features.transition3.conv"
    # a network the factory does not know is probed
    assert target_layer(BrightSpotDetector(), "toy", 1, (8, 8)) == "relu"
    assert target_layer(BrightSpotDetector(), "toy", 1, (8, 8), override="conv") == "conv"
    with pytest.raises(ValueError, match="'features.nope' is not a module"):
        target_layer(net, "densenet121", 1, (32, 32), override="features.nope")
