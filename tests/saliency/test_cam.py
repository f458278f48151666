from __future__ import annotations

import numpy as np
import torch

from medcnn.saliency.cam import gradcam_map


class BrightSpotDetector(torch.nn.Module):
    """A toy classifier whose evidence is known: the logit is the mean of relu(image - 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-0.5)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.head.weight.fill_(1.0)
            self.head.bias.fill_(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.relu(self.conv(x))
        return self.head(features.mean(dim=(2, 3)))


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
