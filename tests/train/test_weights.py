"""ExponentialAverage and clip_gradients: PyTorch's helpers' values, bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from medcnn.train.weights import ExponentialAverage, clip_gradients


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 2),
    )


def _train_a_little(model: torch.nn.Module, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        x = torch.randn(5, 1, 8, 8, generator=generator)
        optimiser.zero_grad()
        model(x).square().mean().backward()
        optimiser.step()


def test_the_average_is_averaged_models_bit_for_bit():
    model = _model()
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    ours = ExponentialAverage(model, 0.8)
    for step in range(5):
        _train_a_little(model, 2, seed=step)
        theirs.update_parameters(model)
        ours.update_parameters(model)
        if step == 2:  # reloaded and moved: the tensors are found where they are now
            ours.load_state_dict(copy.deepcopy(ours.state_dict()))
            model.to(torch.float32)
    mine, want = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == want.keys()
    for key in want:
        assert mine[key].dtype == want[key].dtype, key
        assert torch.equal(mine[key], want[key]), key
    # the BatchNorm's integer counter is averaged too (10 batches seen, EMA of the counts)
    assert int(mine["module.1.num_batches_tracked"]) == int(want["module.1.num_batches_tracked"])
    assert int(mine["n_averaged"]) == 5
    assert not torch.equal(mine["module.0.weight"], model[0].weight.detach())


def test_the_first_update_copies_the_model():
    model = _model()
    ours = ExponentialAverage(model, 0.5)
    _train_a_little(model, 3, seed=1)
    ours.update_parameters(model)
    for a, b in zip(ours.module.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scale", [1e-4, 10.0, float("nan")])
def test_clipping_is_clip_grad_norm(scale):
    model = _model()
    twin = copy.deepcopy(model)
    torch.manual_seed(3)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        p.grad = torch.randn_like(p) * scale
        q.grad = p.grad.clone()
    before = [p.grad.clone() for p in model.parameters()]
    norm = clip_gradients(model.parameters(), 1.0)
    want = torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
    assert torch.equal(norm, want) or (norm.isnan() and want.isnan())
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad) or (p.grad.isnan().all() and q.grad.isnan().all())
    if scale == 1e-4:  # under the limit: untouched
        assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters(), strict=True))
    if scale == 10.0:
        total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
        assert float(total) == pytest.approx(1.0, rel=1e-5)


def test_clipping_without_gradients():
    model = _model()
    assert float(clip_gradients(model.parameters(), 1.0)) == 0.0
