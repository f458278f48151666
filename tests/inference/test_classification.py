from __future__ import annotations

import numpy as np
import torch

from medcnn.data.labels import LabelScheme
from medcnn.inference.classification import TTA_VIEWS, ensemble_probabilities, tta_views


def test_tta_views_start_with_the_input_and_shift_the_right_way():
    image = np.zeros((1, 1, 40, 40), dtype=np.float32)
    image[0, 0, 18:22, 18:22] = 1.0
    views = tta_views(image)
    assert len(views) == len(TTA_VIEWS)
    np.testing.assert_array_equal(views[0], image)
    # (1.0, 0.03, 0.0): content moves along i (axis 2) by 3 % of 40 = 1.2 px
    centre = [float((v[0, 0] * np.arange(40)[:, None]).sum() / v[0, 0].sum()) for v in views]
    assert abs(centre[3] - centre[0] - 1.2) < 0.2
    assert abs(centre[4] - centre[0]) < 0.05
    assert len(tta_views(image, flip=True)) == 2 * len(TTA_VIEWS)


def test_ensemble_is_per_fold_and_softmax_for_multiclass():
    torch.manual_seed(0)
    scheme = LabelScheme.from_target({"column": "f", "classes": ["a", "b", "c"]})
    folds = []
    for bias in (0.0, 1.0):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        torch.nn.init.zeros_(model[1].weight)
        model[1].bias.data = torch.tensor([bias, 0.0, 0.0])
        folds.append((model, {"flip": False}))
    images = np.random.default_rng(0).random((5, 1, 4, 4)).astype(np.float32)
    probs = ensemble_probabilities(folds, images, scheme, torch.device("cpu"), tta=True)
    assert probs.shape == (2, 5, 3)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0], 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(probs[1, :, 0], np.e / (np.e + 2), rtol=1e-6)
