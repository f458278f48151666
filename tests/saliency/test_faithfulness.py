from __future__ import annotations

import numpy as np
import pytest
import torch

from medcnn.saliency.cam import saliency_map
from medcnn.saliency.faithfulness import impute, removal_batch, road_score
from medcnn.stages.saliency.classification import ensemble_probability
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


@pytest.mark.parametrize("dims", [2, 3])
def test_bf16_perturbation_passes_score_like_fp32(dims):
    """``saliency.precision``: bfloat16 forward passes for ROAD (and occlusion) must reach the
    same verdict as fp32; the probability of the untouched image stays fp32."""
    from medcnn.stages.saliency.classification import perturbation_precision, perturbed

    image, _ = planted_image(dims)
    model = faithful_detector(dims)
    heat = saliency_map(model, image, "gradcam", "relu")
    probability = ensemble_probability([model], 0)
    base = float(probability(torch.as_tensor(image[None]))[0])
    exact = road_score(probability, image, heat, base=base)
    with perturbed(torch.bfloat16):
        fast = road_score(probability, image, heat, base=base)
        occlusion = saliency_map(model, image, "occlusion", "relu", occlusion_mask_size=4)
    assert fast["probability"] == exact["probability"] == base
    np.testing.assert_allclose(fast["morf"], exact["morf"], atol=0.02)
    np.testing.assert_allclose(fast["lerf"], exact["lerf"], atol=0.02)
    assert fast["score"] == pytest.approx(exact["score"], abs=0.02)
    reference = saliency_map(model, image, "occlusion", "relu", occlusion_mask_size=4)
    assert occlusion.dtype == np.float32
    np.testing.assert_allclose(occlusion, reference, atol=0.05)
    assert perturbation_precision("fp32") is None
    assert perturbation_precision("bf16") is torch.bfloat16


def test_known_base_probability_is_not_recomputed():
    image, _ = planted_image(2)
    model = faithful_detector(2)
    heat = saliency_map(model, image, "gradcam", "relu")
    seen: list[int] = []

    def probability(batch: torch.Tensor) -> torch.Tensor:
        seen.append(len(batch))
        return ensemble_probability([model], 0)(batch)

    full = road_score(probability, image, heat)
    shared = road_score(probability, image, heat, base=full["probability"])
    assert seen == [9, 8]  # 1 + 2 x 4 fractions, then the 8 perturbed images only
    assert shared == full


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_maps_and_scores_on_cuda_equal_cpu():
    """A saliency job that claimed a GPU computes there, with the CPU's answers."""
    from medcnn.saliency.cam import cam_maps

    image, _ = planted_image(2)
    cpu = faithful_detector(2)
    gpu = faithful_detector(2).cuda()
    for method in ("gradcam", "gradcampp"):
        np.testing.assert_allclose(
            cam_maps(gpu, image, "relu", 0, (method,))[method],
            cam_maps(cpu, image, "relu", 0, (method,))[method],
            atol=1e-4,
        )
    np.testing.assert_allclose(
        saliency_map(gpu, image, "occlusion", "relu", occlusion_mask_size=4),
        saliency_map(cpu, image, "occlusion", "relu", occlusion_mask_size=4),
        atol=1e-4,
    )
    heat = saliency_map(cpu, image, "gradcam", "relu")
    on_gpu = road_score(ensemble_probability([gpu], 0), image, heat)
    on_cpu = road_score(ensemble_probability([cpu], 0), image, heat)
    assert on_gpu["score"] == pytest.approx(on_cpu["score"], abs=1e-4)
