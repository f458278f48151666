from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medcnn.hardware import resolve_precision, resolve_workers
from medcnn.stages.train.classification import run_train
from medcnn.train.classifier import class_balance
from tests.train.conftest import LABELS, write_task


def test_class_balance_hand_computed():
    binary = np.array([[1], [0], [0], [0]], dtype=np.float32)
    pos_weight, draw = class_balance(binary, "binary")
    assert pos_weight.tolist() == [3.0]
    np.testing.assert_allclose(draw, [1.0, 1 / 3, 1 / 3, 1 / 3])
    multiclass = np.eye(2, dtype=np.float32)[[0, 0, 0, 1]]
    weights, draw = class_balance(multiclass, "multiclass")
    np.testing.assert_allclose(weights, [4 / 6, 2.0])
    np.testing.assert_allclose(draw, [1 / 3, 1 / 3, 1 / 3, 1.0])
    multilabel = np.array([[1, 1], [1, 0], [0, 0], [0, 0]], dtype=np.float32)
    pos_weight, draw = class_balance(multilabel, "multilabel")
    np.testing.assert_allclose(pos_weight, [1.0, 3.0])
    # image 0's rarest finding is the second (1 image), image 1 has the first (2 images)
    np.testing.assert_allclose(draw, [1.0, 0.5, 0.5, 0.5])


def test_precision_and_workers_decisions():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu)[0] == "fp32"
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        resolve_precision("fp16", cpu)
    assert resolve_workers("auto", cpu, threads=2) == 0
    assert resolve_workers("auto", cpu, threads=8) == 1
    assert resolve_workers(3, cpu, threads=2) == 3


@pytest.mark.parametrize("scheme", ["multilabel", "multiclass"])
def test_train_any_label_scheme_writes_per_label_metrics(tmp_path, scheme):
    config, _ = write_task(
        tmp_path,
        scheme=scheme,
        train={"epochs": 2, "balance": "sampler" if scheme == "multiclass" else "pos_weight"},
        split={"folds": 2},
    )
    metrics = run_train(config, "cxr", 1, threads=1)
    fold = tmp_path / "results" / "models" / "cxr" / "fold1"
    assert json.loads((fold / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["labels"] == list(LABELS) and metrics["kind"] == scheme
    assert set(metrics["thresholds"]) == set(LABELS)
    validation = metrics["validation"]
    assert set(validation["labels"]) == set(LABELS)
    entry = validation["labels"]["Mass"]
    for key in ("auroc", "auroc_ci", "sensitivity", "specificity", "f1", "ece", "confusion"):
        assert key in entry
    assert set(entry["subgroups"]["view"]) <= {"PA", "AP"}
    assert metrics["n_val_patients"] + metrics["n_train_patients"] == 9  # 12 minus 3 test
    bundle = json.loads((fold / "bundle.json").read_text())
    assert bundle["network"]["out_channels"] == 3 and bundle["labels"] == list(LABELS)
    assert not (fold / "checkpoint.pt").exists()
    assert ("confusion_matrix" in validation) == (scheme == "multiclass")
    # the validation logits an ensemble calibrates on: one row per validation image
    stored = bundle["validation"]
    assert np.asarray(stored["logits"]).shape == np.asarray(stored["targets"]).shape
    assert np.asarray(stored["logits"]).shape[1] == 3
    from medcnn.data.labels import LabelScheme
    from medcnn.inference.classification import ensemble_calibration, ensemble_thresholds

    label_scheme = LabelScheme.from_target(config["tasks"]["cxr"]["target"])
    pair = [(None, bundle), (None, bundle)]
    common = ensemble_calibration(pair, label_scheme.kind)
    assert common["method"] == ("temperature" if scheme == "multiclass" else "platt")
    assert common["n"] == 2 * len(stored["logits"])
    thresholds = ensemble_thresholds(
        pair, label_scheme, common, config["tasks"]["cxr"]["evaluation"]
    )
    assert len(thresholds) == 3 and all(0.0 <= t <= 1.0 for t in thresholds)


def _progress_after(keep: str, aurocs: list[float]):
    from medcnn.train.classifier_epoch import FoldProgress

    progress = FoldProgress.of(1, None, keep)
    for epoch, auroc in enumerate(aurocs, start=1):
        model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.constant_(model.weight, float(epoch))  # the weights name their epoch
        record = {"epoch": epoch, "val_auroc": auroc, "val_loss": 1.0 / epoch}
        progress.add(record, model, np.full((2, 1), epoch / 10))
    return progress


def test_keep_best_or_last_epoch_and_early_stopping_counts_from_the_best():
    aurocs = [0.6, 0.9, 0.7, 0.8, 0.75]
    best, last = _progress_after("best", aurocs), _progress_after("last", aurocs)
    assert best.best["epoch"] == 2 and best.best_state["weight"].item() == 2.0
    assert best.best_probs[0, 0] == pytest.approx(0.2)
    assert last.best == {"epoch": 5, "val_auroc": 0.75, "val_loss": pytest.approx(0.2)}
    assert last.best_state["weight"].item() == 5.0 and last.best_probs[0, 0] == pytest.approx(0.5)
    # both count three epochs without a better AUROC than epoch 2's 0.9
    assert best.bad_epochs == last.bad_epochs == 3
    assert best.top["epoch"] == last.top["epoch"] == 2
    # a resumed run goes on counting from the best validated epoch, not the kept one
    from medcnn.train.classifier_epoch import FoldProgress

    state = {**last.saved(), "epoch": 5}
    resumed = FoldProgress.of(1, state, "last")
    assert resumed.top["epoch"] == 2 and resumed.best["epoch"] == 5 and resumed.start_epoch == 6


def test_train_keep_last_keeps_the_final_epoch(tmp_path):
    config, _ = write_task(tmp_path, train={"epochs": 3, "keep": "last", "patience": 1})
    metrics = run_train(config, "cxr", 0, threads=1)
    assert metrics["kept"] == "last"
    assert metrics["best_epoch"] == metrics["epochs_run"]
    fold = tmp_path / "results" / "models" / "cxr" / "fold0"
    history = (fold / "history.csv").read_text().splitlines()
    last_row = dict(zip(history[0].split(","), history[-1].split(","), strict=True))
    assert metrics["val_auroc"] == pytest.approx(float(last_row["val_auroc"]))
