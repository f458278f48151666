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
