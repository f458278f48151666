"""2D-on-volume segmentation: a 2D U-Net trained on the slices of 3D volumes learns a bright
sphere, predicts slice by slice back onto the ingest grid, and its bundle predicts the same."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medcnn.inference.segmentation import load_models, predict_array, predict_labels
from medcnn.metrics.segmentation import dice
from medcnn.train.loaders import segmenter_loader
from medcnn.train.segmenter import settings_of, train_segmenter
from medcnn.transforms.segmentation import preprocess_case
from tests.planning.settings import plan

#: LPS-ordered voxels (i to the right, j to the back), 1 x 1 x 2 mm: not the canonical grid.
AFFINE = np.diag([-1.0, -1.0, 2.0, 1.0])
SLICES = {"enabled": True, "axis": "axial", "context": 1, "foreground_fraction": 0.6}
TASK = {
    "kind": "segmentation",
    "train": {
        "epochs": 12,
        "iterations_per_epoch": 5,
        "learning_rate": 0.01,
        "warmup_epochs": 0,
        "precision": "fp32",
        "seed": 0,
    },
    "segmentation": {"samples_per_image": 1, "positive_fraction": 0.5},
}


def sphere_case(tmp_path, k: int, shape=(28, 28, 14)) -> dict[str, str]:
    """A bright sphere (radius 5-7 mm, somewhere inside) on noise, as NIfTI image + mask."""
    rng = np.random.default_rng(100 + k)
    centre = rng.uniform([9, 9, 4], [19, 19, 10])
    radius = rng.uniform(5.0, 7.0)
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    mm = np.sqrt((ii - centre[0]) ** 2 + (jj - centre[1]) ** 2 + (2 * (kk - centre[2])) ** 2)
    label = (mm <= radius).astype(np.uint8)
    image = (rng.normal(100.0, 10.0, shape) + 25.0 * label).astype(np.float32)
    paths = {}
    for name, data in (("image", image), ("label", label)):
        path = tmp_path / f"case{k}_{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, AFFINE), path)
        paths[name] = str(path)
    return paths


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sliced_plans(cases, **settings):
    return plan(
        "sphere",
        cases,
        **{"modalities": ["MR"], "features": 8, "batch_size": 8, "slices": SLICES, **settings},
    )


def test_plans_put_a_2d_network_with_context_channels_on_the_axial_slices(tmp_path):
    cases = [sphere_case(tmp_path, k) for k in range(2)]
    plans = sliced_plans(cases)
    assert plans["dims"] == 3 and plans["target_spacing"] == [1.0, 1.0, 2.0]
    assert plans["slices"] == {
        "axis": "axial",
        "axis_index": 2,
        "context": 1,
        "foreground_fraction": 0.6,
    }
    assert plans["network"]["dims"] == 2 and plans["network"]["in_channels"] == 3
    assert len(plans["patch_size"]) == 2 and plans["patch_size"][0] >= 28
    coronal = sliced_plans(cases, slices={**SLICES, "axis": "coronal", "context": 0})
    assert coronal["slices"]["axis_index"] == 1 and coronal["network"]["in_channels"] == 1
    # the in-plane grid of a coronal slice: 28 voxels of 1 mm by 14 of 2 mm
    assert coronal["median_shape"] == [28, 28, 14]
    with pytest.raises(ValueError, match="3 sides for a 2D network"):
        sliced_plans(cases, patch_size=[32, 32, 16])


def test_training_draws_foreground_slices_at_the_configured_rate(tmp_path):
    cases = [sphere_case(tmp_path, k) for k in range(3)]
    plans = sliced_plans(cases)
    items = []
    for c in cases:
        image, label, _ = preprocess_case(c["image"], c["label"], plans)
        items.append({"image": image, "label": label})
    settings = settings_of({**TASK, "segmentation": {"samples_per_image": 1}})
    dataset, loader, generator = segmenter_loader(items, plans, settings, torch.device("cpu"))
    generator.manual_seed(0)
    dataset.transform.set_random_state(seed=0)
    drawn = []
    for batch in loader:
        assert batch["image"].shape[1:] == (3, *plans["patch_size"])
        assert batch["label"].shape[1:] == (1, *plans["patch_size"])
        drawn += [bool(x.any()) for x in batch["label"]]
    # slice draws: 60 % with foreground (binomial, 42 draws, seeded)
    assert len(drawn) == sum(i["image"].shape[-1] for i in items)
    assert 0.4 < np.mean(drawn) < 0.85


def test_a_2d_unet_on_slices_learns_the_sphere_and_its_bundle_predicts_the_same(tmp_path):
    cases = [sphere_case(tmp_path, k) for k in range(5)]
    train, val, held = cases[:3], cases[3], cases[4]
    plans = sliced_plans(train)
    items = []
    for c in [*train, val]:
        image, label, _ = preprocess_case(c["image"], c["label"], plans)
        items.append({"image": image, "label": label})
    out = tmp_path / "fold0"
    metrics = train_segmenter(items[:3], items[3:], plans, TASK, out, threads=1)
    assert metrics["epochs_run"] == 12
    # the held-out sphere, predicted slice by slice back on its LPS ingest grid
    models, description = load_models([out])
    assert description["plans"]["slices"]["axis"] == "axial"
    label_img, prob, _ = predict_labels(models, description["plans"], held["image"], flips=True)
    ref = nib.load(held["label"])
    np.testing.assert_allclose(label_img.affine, ref.affine)
    assert label_img.shape == ref.shape and prob.shape == (2, *ref.shape)
    held_dice = dice(np.asarray(label_img.dataobj) > 0, np.asarray(ref.dataobj) > 0)
    assert held_dice > 0.85, held_dice
    # the reloaded bundle gives the validation Dice the training run recorded
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 13
    recorded = json.loads((out / "metrics.json").read_text())["val_dice"]
    val_prob = predict_array(models, plans, items[3]["image"], overlap=0.5)
    assert dice(val_prob.argmax(0) > 0, items[3]["label"][0] > 0) == pytest.approx(
        recorded, abs=1e-6
    )


def test_the_slices_keys_default_to_axial_and_need_a_3d_segmentation_task():
    from medcnn.config import ConfigError, validate_config

    def config(**task):
        return {"inputs": ["scans"], "tasks": {"t": {"kind": "segmentation", **task}}}

    filled = validate_config(config(dims=3))["tasks"]["t"]["segmentation"]["slices"]
    assert filled == {"enabled": False, "axis": "axial", "context": 0, "foreground_fraction": 0.5}
    on = {"slices": {"enabled": True, "axis": "coronal"}}
    assert validate_config(config(dims=3, segmentation=on))["tasks"]["t"]["segmentation"]["slices"][
        "axis"
    ] == ("coronal")
    with pytest.raises(ConfigError, match=r"slices\.enabled: .* needs a 3D segmentation task"):
        validate_config(config(dims=2, segmentation=on))
