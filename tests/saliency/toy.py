"""Toy networks whose evidence is known, for testing saliency and faithfulness."""

from __future__ import annotations

import numpy as np
import torch


class BrightSpotDetector(torch.nn.Module):
    """A classifier whose evidence is known: the logit grows with the voxels above 0.5.

    ``logit = gain * mean(relu(x - 0.5)) + bias`` through a 1-voxel convolution, so the
    bright planted pattern is the only evidence, and removing it drops the probability.
    """

    def __init__(self, dims: int = 2, gain: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        self.dims = dims
        self.conv = conv(1, 1, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-0.5)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.head.weight.fill_(gain)
            self.head.bias.fill_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.relu(self.conv(x))
        return self.head(features.mean(dim=tuple(range(2, 2 + self.dims))))


def faithful_detector(dims: int = 2) -> BrightSpotDetector:
    """Gain and bias that put a planted 6-voxel-wide pattern near p = 0.8, its absence near 0.1."""
    size = 32 if dims == 2 else 16
    area = 6**dims / size**dims
    return BrightSpotDetector(dims, gain=4.0 / (0.5 * area), bias=-2.5).eval()


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture with freshly drawn weights (a model-randomisation check)."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model.eval()


def planted_image(dims: int = 2, seed: int = 0) -> tuple[np.ndarray, tuple[slice, ...]]:
    """A noisy image ``(1, *spatial)`` (32 px in 2D, 16 voxels in 3D) with one bright block."""
    size = 32 if dims == 2 else 16
    image = np.random.default_rng(seed).random((1,) + (size,) * dims).astype(np.float32) * 0.3
    where = (slice(9, 15), slice(2, 8)) if dims == 2 else (slice(9, 15), slice(2, 8), slice(5, 11))
    image[(0, *where)] = 1.0
    return image, where


class RandomCNN(torch.nn.Module):
    """Two random 3x3 convolutions, global mean, linear head: responds to texture at random.

    ``head_gain`` amplifies the head so the probability does move with the input; a map of
    such a model can then only score well by ranking voxels the way the model uses them.
    """

    def __init__(self, seed: int, head_gain: float = 100.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(8, 1)
        with torch.no_grad():
            self.head.weight.mul_(head_gain)
            self.head.bias.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.relu(self.conv2(self.relu1(self.conv1(x))))
        return self.head(features.mean(dim=(2, 3)))
