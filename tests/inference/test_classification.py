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


def _mean_model(scale: float) -> torch.nn.Module:
    """A binary classifier whose logit is ``scale`` times the image's mean pixel."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1, bias=False))
    model[1].weight.data.fill_(scale / 16)
    return model


def test_an_ensemble_shares_one_calibration_fitted_on_every_folds_validation():
    """Two folds whose own Platt fits differ: the ensemble fits one calibration on both
    folds' stored validation logits and applies it to each fold's logits, so neither fold
    outweighs the other; its thresholds come from the same pooled, calibrated validation."""
    from medcnn.inference.classification import ensemble_calibration, ensemble_thresholds
    from medcnn.metrics.calibration import apply_calibration, fit_calibration

    scheme = LabelScheme.from_target({"column": "f", "positive": "p"})
    rng = np.random.default_rng(0)
    folds = []
    pooled_logits, pooled_targets = [], []
    for scale in (1.0, 4.0):
        targets = (rng.random(60) < 0.4).astype(float)[:, None]
        logits = (targets * 2 - 1) * 1.5 + rng.normal(0, 1.0, (60, 1))
        pooled_logits.append(logits)
        pooled_targets.append(targets)
        own = fit_calibration(logits * scale, targets, "binary", "platt")
        bundle = {
            "flip": False,
            "calibration": own,
            "validation": {"logits": (logits * scale).tolist(), "targets": targets.tolist()},
        }
        folds.append((_mean_model(scale), bundle))
    common = ensemble_calibration(folds, "binary")
    expected = fit_calibration(
        np.concatenate([p * s for p, s in zip(pooled_logits, (1.0, 4.0), strict=True)]),
        np.concatenate(pooled_targets),
        "binary",
        "platt",
    )
    assert common["method"] == "platt" and common["n"] == 120
    np.testing.assert_allclose(common["slope"], expected["slope"], rtol=1e-6)
    images = np.array([-0.5, 0.0, 0.5], np.float32)[:, None, None, None] * np.ones(
        (1, 1, 4, 4), np.float32
    )
    probs = ensemble_probabilities(folds, images, scheme, torch.device("cpu"))
    for k, scale in enumerate((1.0, 4.0)):
        z = images.reshape(3, -1).mean(axis=1, keepdims=True) * scale
        want = 1 / (1 + np.exp(-apply_calibration(z, common)))
        np.testing.assert_allclose(probs[k], want, rtol=1e-5)
    # one model alone keeps its own calibration; bundles without stored logits too
    assert ensemble_calibration(folds[:1], "binary") is None
    assert ensemble_calibration([folds[0], (folds[1][0], {"flip": False})], "binary") is None
    thresholds = ensemble_thresholds(
        folds, scheme, common, {"threshold": "youden", "sensitivity": 0.9}
    )
    assert len(thresholds) == 1 and 0.05 < thresholds[0] < 0.95
    # the fit is made once per ensemble: asked again (each subject, the thresholds, saliency)
    # it is not refitted, and a caller changing its copy does not change the next one
    from medcnn.inference import classification as inference

    inference._fitted_calibration.cache_clear()
    first = ensemble_calibration(folds, "binary")
    first["slope"][0] = 99.0
    again = ensemble_calibration(folds, "binary")
    info = inference._fitted_calibration.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    np.testing.assert_allclose(again["slope"], expected["slope"], rtol=1e-6)
