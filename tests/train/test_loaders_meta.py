"""Training batches drawn with MONAI's metadata tracking off are the same values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import get_track_meta

from medcnn.train.loaders import without_meta_tracking
from medcnn.transforms.radiograph import KEY, augment_transforms
from medcnn.transforms.segmentation import IMAGE, LABEL, train_transforms


def _plain(value) -> torch.Tensor:
    return torch.as_tensor(value).as_subclass(torch.Tensor)


def _draws(make, item, n: int, tracked: bool) -> list[torch.Tensor]:
    transform = make()
    transform.set_random_state(5)
    if tracked:
        outs = [transform(dict(item)) for _ in range(n)]
    else:
        with without_meta_tracking():
            outs = [transform(dict(item)) for _ in range(n)]
    flat = []
    for out in outs:
        for patch in out if isinstance(out, list) else [out]:
            flat += [_plain(patch[k]) for k in sorted(patch) if k in (KEY, IMAGE, LABEL)]
    return flat


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b, strict=True):
        assert type(x) is torch.Tensor
        assert x.dtype == y.dtype
        assert torch.equal(x, y)


def test_radiograph_augmentation_is_the_same_without_metadata():
    rng = np.random.default_rng(0)
    item = {KEY: rng.random((1, 48, 48), dtype=np.float32)}
    tracked = _draws(lambda: augment_transforms(48, flip=True), item, 12, True)
    untracked = _draws(lambda: augment_transforms(48, flip=True), item, 12, False)
    _same(tracked, untracked)
    assert not all(torch.equal(tracked[0], t) for t in tracked[1:])  # really random draws


@pytest.mark.parametrize(("dims", "scheme"), [(2, "rgb"), (2, "zscore"), (3, "zscore")])
def test_segmentation_patches_are_the_same_without_metadata(dims, scheme):
    rng = np.random.default_rng(1)
    channels = 3 if scheme == "rgb" else 1
    shape = (40,) * dims
    item = {
        IMAGE: rng.normal(size=(channels, *shape)).astype(np.float32),
        LABEL: (rng.random((1, *shape)) > 0.8).astype(np.uint8),
    }
    plans = {
        "dims": dims,
        "patch_size": [24] * dims,
        "normalisation": {"scheme": scheme},
        "target_spacing": [1.0] * dims,
    }

    def make():
        return train_transforms(
            plans, samples_per_image=2, positive_fraction=0.5, scale_range=[0.8, 1.2], augment=True
        )

    _same(_draws(make, item, 6, True), _draws(make, item, 6, False))


def test_tracking_is_restored_after_an_error():
    assert get_track_meta()
    with pytest.raises(RuntimeError), without_meta_tracking():
        assert not get_track_meta()
        raise RuntimeError("a broken batch")
    assert get_track_meta()
