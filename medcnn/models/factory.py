"""Build MONAI networks by name, and know each one's layer for class activation maps."""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet121

#: The last convolutional stage's activation: where Grad-CAM has the most spatial detail
#: that still carries class evidence.
CAM_LAYERS = {"densenet121": "class_layers.relu"}


def build_network(name: str, dims: int, in_channels: int, out_channels: int) -> torch.nn.Module:
    """A freshly initialised network.

    Args:
        name: ``densenet121``.
        dims: spatial dimensions (2 or 3).
        in_channels: image channels (1 for a radiograph).
        out_channels: logits (1 for a binary finding).

    Raises:
        ValueError: unknown network name.
    """
    if name == "densenet121":
        return DenseNet121(spatial_dims=dims, in_channels=in_channels, out_channels=out_channels)
    raise ValueError(f"unknown network {name!r} (known: {', '.join(sorted(CAM_LAYERS))})")


def cam_layer(name: str, override: str | None = None) -> str:
    """The target layer for CAM methods: the override when given, else the network's default."""
    return override or CAM_LAYERS[name]
