"""A tiny segmentation training run: the loss falls, the bundle rebuilds, a resume continues."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import medcnn.train.segmenter as segmenter
from medcnn.models.bundle import load_bundle
from medcnn.train.segmenter import train_segmenter

PLANS = {
    "task": "discs",
    "kind": "segmentation",
    "dims": 2,
    "n_channels": 1,
    "classes": ["background", "disc"],
    "target_spacing": [1.0, 1.0],
    "patch_size": [32, 32],
    "batch_size": 4,
    "normalisation": {"scheme": "zscore"},
    "network": {
        "name": "unet",
        "dims": 2,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [8, 16, 32],
        "strides": [2, 2],
        "num_res_units": 1,
        "norm": "instance",
    },
}
TASK = {
    "kind": "segmentation",
    "train": {
        "epochs": 4,
        "iterations_per_epoch": 6,
        "learning_rate": 0.01,
        "warmup_epochs": 0,
        "seed": 3,
    },
    "segmentation": {"samples_per_image": 2},
}


def discs(n: int, seed: int = 0, size: int = 40) -> list[dict[str, np.ndarray]]:
    """Preprocessed-looking items: bright discs of radius 4-8 on noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    items = []
    for _ in range(n):
        label = np.zeros((size, size), np.uint8)
        for _ in range(3):
            cy, cx, r = rng.integers(8, size - 8, 2).tolist() + [int(rng.integers(4, 8))]
            label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        image = rng.normal(0.0, 0.5, (size, size)) + 1.5 * label
        items.append({"image": image[None].astype(np.float32), "label": label[None]})
    return items


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_tiny_run_learns_and_writes_a_bundle(tmp_path):
    items = discs(6)
    metrics = train_segmenter(items[:4], items[4:], PLANS, TASK, tmp_path, threads=1)
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert len(history) == 5 and history[0].startswith("epoch,train_loss")
    losses = [float(line.split(",")[1]) for line in history[1:]]
    assert losses[-1] < 0.8 * losses[0]
    assert metrics["epochs_run"] == 4 and metrics["stop_reason"] == "epochs"
    assert metrics["val_dice"] > 0.6
    assert metrics["val_dice"] == max(
        json.loads(json.dumps(metrics))["best"]["val_dice"], metrics["val_dice"]
    )
    model, description = load_bundle(tmp_path)
    assert description["classes"] == ["background", "disc"]
    assert description["network"]["channels"] == [8, 16, 32]
    assert description["plans"]["patch_size"] == [32, 32]
    assert not (tmp_path / "checkpoint.pt").exists()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["best_epoch"] == metrics["best_epoch"]


class Interrupted(RuntimeError):
    pass


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    items = discs(5, seed=1)
    # precision auto times bf16 against fp32 in each run; on a loaded CPU the reference and
    # the interrupted run can choose differently, and then their weights differ by rounding.
    train = {**TASK["train"], "epochs": 3, "iterations_per_epoch": 3, "precision": "fp32"}
    task = {**TASK, "train": train}
    train_segmenter(items[:3], items[3:], PLANS, task, tmp_path / "reference", threads=1)

    save = segmenter.save_checkpoint

    def save_then_die(path, state):
        save(path, state)
        if state["epoch"] == 2:
            raise Interrupted("killed after epoch 2")

    monkeypatch.setattr(segmenter, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        train_segmenter(items[:3], items[3:], PLANS, task, tmp_path / "killed", threads=1)
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    assert not (tmp_path / "killed" / "bundle.json").exists()
    monkeypatch.setattr(segmenter, "save_checkpoint", save)
    metrics = train_segmenter(items[:3], items[3:], PLANS, task, tmp_path / "killed", threads=1)
    assert metrics["resumed_from_epoch"] == 3 and metrics["epochs_run"] == 3
    reference = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_time_budget_stops_after_the_epoch(tmp_path):
    items = discs(3, seed=2)
    metrics = train_segmenter(items[:2], [], PLANS, TASK, tmp_path, threads=1, max_minutes=1e-4)
    assert metrics["epochs_run"] == 1
    assert metrics["stop_reason"].startswith("time budget")
    assert metrics["best_epoch"] == 1  # no validation images: the last epoch is kept


def test_class_weights_auto_weighs_the_touching_boundary():
    from medcnn.train.segmenter import class_weights

    four = {
        "kind": "instance_segmentation",
        "classes": ["background", "interior", "boundary", "touching"],
    }
    assert class_weights("auto", four) == [1.0, 1.0, 2.0, 4.0]
    three = {**four, "classes": ["background", "interior", "boundary"]}
    assert class_weights("auto", three) == [1.0, 1.0, 2.0]
    assert (
        class_weights("auto", {"kind": "segmentation", "classes": ["background", "lesion"]}) is None
    )
    assert class_weights(None, four) is None
    assert class_weights([1, 3, 3, 9], four) == [1.0, 3.0, 3.0, 9.0]
    with pytest.raises(ValueError, match="3 values for the 4 classes"):
        class_weights([1, 2, 3], four)


def test_trainer_settings_are_the_schemas_keys():
    from medcnn.stages.train.segmentation import watershed_grid
    from medcnn.train.segmenter import settings_of

    settings = settings_of({})
    assert settings["val_every"] == 5 and settings["warmup_epochs"] == 1
    assert settings["class_weights"] == "auto" and settings["clock"] == "wall"
    assert settings["compile"] is False  # measured not to pay on the nuclei benchmark
    assert settings_of({"train": {"val_every": 2}})["val_every"] == 2
    grid = watershed_grid({"watershed": {"elevation": ["distance"]}})
    assert grid == {
        "interior_threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        "foreground_threshold": [0.4, 0.5, 0.6, 0.7, 0.8],
        "elevation": ["distance"],
        "min_marker_size": [4],
        "min_relative_size": [0.0, 0.1, 0.2],
    }


@pytest.mark.slow
def test_compiled_training_learns_like_eager(tmp_path):
    """``train.compile: true`` with the real TorchInductor (needs a C++ compiler; tens of
    seconds to compile): the compiled passes train the same network, which is saved eager;
    a run asked to compile where none can still trains (the reason is recorded either way)."""
    items = discs(6)
    task = {**TASK, "train": {**TASK["train"], "compile": True}}
    eager = train_segmenter(items[:4], items[4:], PLANS, TASK, tmp_path / "eager", threads=1)
    metrics = train_segmenter(items[:4], items[4:], PLANS, task, tmp_path / "compiled", threads=1)
    info = metrics["compile_info"]
    assert info["setting"] is True
    if info.get("compiled"):
        assert info["reason"] == "configured"
    else:
        assert info["reason"].startswith("compile failed")
    assert metrics["val_dice"] > 0.6
    # The same seed and batches: compiled kernels round differently, nothing more.
    assert abs(metrics["val_dice"] - eager["val_dice"]) < 0.05
    model, _ = load_bundle(tmp_path / "compiled")
    assert not any("_orig_mod" in k for k in model.state_dict())
