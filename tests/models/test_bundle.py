from __future__ import annotations

import pytest
import torch

from medcnn.models.bundle import BundleError, load_bundle, save_bundle
from medcnn.models.factory import build_network, cam_layer, load_initial_weights

NETWORK = {"name": "densenet121", "dims": 2, "in_channels": 1, "out_channels": 1}


def test_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_network(**NETWORK).eval()
    saved = save_bundle(tmp_path, model, {"name": "t", "network": NETWORK, "plans": {"size": 32}})
    loaded, description = load_bundle(tmp_path)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert description["weights_sha256"] == saved["weights_sha256"]
    assert description["versions"]["torch"] == torch.__version__


def test_tampered_or_truncated_weights_fail_clearly(tmp_path):
    model = build_network(**NETWORK)
    save_bundle(tmp_path, model, {"name": "t", "network": NETWORK, "plans": {}})
    weights = tmp_path / "model.pt"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BundleError, match="does not match"):
        load_bundle(tmp_path)
    weights.unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(tmp_path)


def test_unknown_network_and_cam_layer():
    with pytest.raises(ValueError, match="unknown network 'vgg'.*densenet121"):
        build_network("vgg", 2, 1, 1)
    assert cam_layer("densenet121") == "class_layers.relu"
    assert cam_layer("densenet121", "features.denseblock4") == "features.denseblock4"


@pytest.mark.parametrize("name", ["resnet18", "seresnet50", "efficientnet-b0"])
def test_other_backbones_build_and_have_a_cam_layer(name):
    torch.manual_seed(0)
    model = build_network(name, 2, 1, 3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    assert cam_layer(name) in dict(model.named_modules())


def test_initial_weights_adapt_rgb_stem_and_skip_other_head(tmp_path):
    torch.manual_seed(0)
    # A 14-finding RGB network, as CheXNet's, saved as a checkpoint with a DDP prefix.
    source = build_network("densenet121", 2, 3, 14)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 7}, tmp_path / "chexnet.pt")
    model = build_network("densenet121", 2, 1, 1)
    report = load_initial_weights(model, tmp_path / "chexnet.pt")
    assert report["adapted"] == ["features.conv0.weight"]
    assert sorted(report["skipped"]) == ["class_layers.out.bias", "class_layers.out.weight"]
    assert report["missing"] == 2  # the new head keeps its initialisation
    torch.testing.assert_close(
        model.features.conv0.weight, source.features.conv0.weight.sum(dim=1, keepdim=True)
    )
    torch.testing.assert_close(
        model.features.denseblock1.denselayer1.layers.conv1.weight,
        source.features.denseblock1.denselayer1.layers.conv1.weight,
    )
    with pytest.raises(ValueError, match="no tensor fits"):
        torch.save({"x": torch.zeros(3)}, tmp_path / "other.pt")
        load_initial_weights(model, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="cannot read initial weights"):
        load_initial_weights(model, tmp_path / "missing.pt")
