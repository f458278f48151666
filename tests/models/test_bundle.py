from __future__ import annotations

import pytest
import torch

from medcnn.models.bundle import BundleError, load_bundle, save_bundle
from medcnn.models.factory import build_network, cam_layer

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
    with pytest.raises(ValueError, match="unknown network 'vgg'"):
        build_network("vgg", 2, 1, 1)
    assert cam_layer("densenet121") == "class_layers.relu"
    assert cam_layer("densenet121", "features.denseblock4") == "features.denseblock4"
