from __future__ import annotations

import numpy as np
import pytest
import torch

from medcnn.saliency.cam import saliency_map
from medcnn.saliency.faithfulness import impute, removal_batch, road_score
from medcnn.saliency.pipeline import ensemble_probability
from tests.saliency.toy import RandomCNN, faithful_detector, planted_image, randomised

THRESHOLD = 0.05  # the schema default of tasks.<task>.saliency.faithfulness_threshold


def test_imputation_keeps_kept_voxels_and_interpolates_a_ramp():
    ramp = torch.linspace(0, 1, 16).view(1, 1, 16, 1).expand(1, 1, 16, 16).clone()
    removed = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    removed[0, 0, 6:10, 6:10] = True
    filled = impute(ramp, removed, iterations=200)
    assert torch.equal(filled[~removed.expand_as(filled)], ramp[~removed.expand_as(ramp)])
    # a harmonic fill reproduces a linear ramp: no edge, no noise
    assert torch.allclose(filled, ramp, atol=2e-3)


def test_removal_batch_removes_the_requested_shares():
    image = torch.rand(1, 10, 10, generator=torch.Generator().manual_seed(0))
    heat = torch.arange(100, dtype=torch.float32).view(10, 10)
    batch = removal_batch(image, heat, [0.1, 0.5])
    assert batch.shape == (4, 1, 10, 10)
    changed = (batch != image).flatten(1).sum(1).tolist()
    assert changed[0] <= 10 and changed[1] <= 50 and changed[1] > 30
    # MoRF takes the top of the map (last rows), LeRF the bottom (first rows)
    assert torch.equal(batch[0, 0, :9], image[0, :9])
    assert torch.equal(batch[2, 0, 1:], image[0, 1:])


@pytest.mark.parametrize("dims", [2, 3])
def test_faithful_model_scores_high_and_randomised_model_does_not(dims):
    image, where = planted_image(dims)
    model = faithful_detector(dims)
    heat = saliency_map(model, image, "gradcam", "relu")
    faith = road_score(ensemble_probability([model], 0), image, heat)
    assert faith["probability"] == pytest.approx(0.78, abs=0.05)
    assert faith["morf"][-1] < 0.2  # the pattern imputed away: evidence gone
    # background removed: the evidence stays (it may even grow, as the fill next to the
    # bright pattern is bright)
    assert min(faith["lerf"]) >= faith["probability"] - 0.02
    assert faith["score"] > 0.4

    torch.manual_seed(0)
    random_model = randomised(faithful_detector(dims), seed=1)
    random_heat = saliency_map(random_model, image, "gradcam", "relu")
    random_faith = road_score(ensemble_probability([random_model], 0), image, random_heat)
    assert abs(random_faith["score"]) < THRESHOLD
    # and its map need not point at the pattern at all, while the trained one does
    outside = np.ones(heat.shape, bool)
    outside[where] = False
    assert heat[where].mean() > 3 * heat[outside].mean()


def test_a_map_pointing_away_from_the_evidence_scores_negative():
    image, where = planted_image()
    model = faithful_detector()
    wrong = np.ones(image.shape[1:], np.float32)
    wrong[where] = 0.0
    faith = road_score(ensemble_probability([model], 0), image, wrong)
    assert faith["score"] < -0.2


def test_shape_mismatch_is_a_clear_error():
    image, _ = planted_image()
    with pytest.raises(ValueError, match="does not match image"):
        road_score(ensemble_probability([faithful_detector()], 0), image, np.zeros((8, 8)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_randomised_cnn_maps_do_not_pass_as_faithful(seed, method):
    image, _ = planted_image()
    model = RandomCNN(seed)
    heat = saliency_map(model, image, method, "relu", occlusion_mask_size=4)
    faith = road_score(ensemble_probability([model], 0), image, heat)
    assert abs(faith["score"]) < THRESHOLD
