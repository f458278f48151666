"""DDP training: ``medcnn train`` relaunches itself under torchrun (gloo on this CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medcnn import cli
from medcnn.data.index import read_index
from medcnn.data.labels import LabelScheme
from medcnn.data.split import subject_role
from medcnn.inference.classification import predict_logits
from medcnn.models.bundle import load_bundle
from medcnn.train import distributed
from tests.train.conftest import write_task
from tests.train.resume_checks import assert_resumed_like_reference

REPO = Path(__file__).resolve().parents[2]


def ddp_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.pop(distributed.CHILD_ENV, None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    # Two ranks of one thread each: the two cores of the test machine, no oversubscription.
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def train_command(configfile: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "medcnn", "train", "--config", str(configfile)]
    return [*command, "--task", "cxr", "--threads", "2", *extra]


def train(configfile: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_command(configfile, *extra),
        env=ddp_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_relaunch_command_for_four_gpus(tmp_path, monkeypatch):
    assert distributed.relaunch_command(4, ["train", "--task", "cxr"], "py") == [
        "py",
        *("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"),
        *("-m", "medcnn", "train", "--task", "cxr"),
    ]
    for name in (distributed.PROCS_ENV, distributed.CHILD_ENV, "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.processes(gpus=1, visible_devices=1) == 1
    assert distributed.processes(gpus=4, visible_devices=2) == 2  # the scheduler gave two
    assert not distributed.should_relaunch(1)

    # Through the CLI: a job asking for 4 GPUs on a (simulated) 4-GPU machine claims them
    # and runs torchrun with 4 processes, which inherit the claimed devices.
    _, configfile = write_task(tmp_path)
    raw = yaml.safe_load(configfile.read_text())
    raw["resources"] = {"train": {"gpu": 4}}
    configfile.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MEDCNN_GPU_COUNT", "4")
    monkeypatch.setenv("MEDCNN_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    launched = []

    class FakePopen:
        def __init__(self, command, env, preexec_fn=None):
            launched.append((command, env))

        def wait(self):
            return 3

        def send_signal(self, signum):
            pass

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    argv = ["train", "--config", str(configfile), "--task", "cxr", "--fold", "0"]
    assert cli.main(argv) == 3  # torchrun's exit code is the job's
    ((command, env),) = launched
    assert command == distributed.relaunch_command(4, argv, sys.executable)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and env[distributed.CHILD_ENV] == "1"
    assert distributed.should_relaunch(4)
    monkeypatch.setenv(distributed.CHILD_ENV, "1")  # inside torchrun: no second relaunch
    assert not distributed.should_relaunch(4)


def test_two_gloo_processes_train_one_bundle(tmp_path):
    _, configfile = write_task(tmp_path, n_patients=12, train={"epochs": 2})
    result = train(configfile, **{distributed.PROCS_ENV: "2"})
    log = result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "DDP: training in 2 processes" in log and "--standalone" in log
    assert "DDP: 2 processes, backend gloo" in log
    # The replicas ended with the same weights (rank 0 logs the check of every rank's digest).
    assert "DDP: all 2 ranks hold identical parameters" in log
    # One writer: each epoch logged once, nothing at INFO from rank 1.
    assert log.count("epoch 1/2 ") == 1 and log.count("epoch 2/2 ") == 1
    assert "INFO [rank 1]" not in log

    fold = tmp_path / "results" / "models" / "cxr" / "fold0"
    history = (fold / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2"]
    assert not (fold / "checkpoint.pt").exists()
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["epochs_run"] == 2
    assert not any(k.startswith("module.") for k in torch.load(fold / "model.pt"))
    model, _ = load_bundle(fold)

    # Validation was a single process's: the bundle (the best epoch's weights), run here in
    # one process on the validation images, gives the validation loss of metrics.json.
    pre = tmp_path / "results" / "preprocess" / "cxr"
    split = json.loads((tmp_path / "results" / "splits" / "cxr.json").read_text())
    rows = [r for r in read_index(pre / "index.tsv").to_dict("records")]
    rows = [r for r in rows if subject_role(split, r["subject"], 0) == "val"]
    images = np.stack([np.load(pre / r["array"]) for r in rows])
    targets = LabelScheme.from_target({"column": "finding", "positive": "Effusion"}).decode(
        [r["target"] for r in rows]
    )
    logits = predict_logits(model, images, torch.device("cpu"), channels_last=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.as_tensor(logits), torch.as_tensor(targets)
    )
    assert abs(float(loss) - metrics["val_loss"]) < 1e-5


def test_an_error_in_the_ranks_fails_the_job_clearly(tmp_path):
    _, configfile = write_task(tmp_path, n_patients=12)
    result = train(configfile, "--fold", "5", **{distributed.PROCS_ENV: "2"})
    assert result.returncode != 0
    assert "fold 5 is not in the split" in result.stderr
    assert "DDP training failed: torchrun exited with code" in result.stderr


@pytest.mark.slow
def test_ddp_job_killed_then_resumed_ends_like_uninterrupted(tmp_path):
    two = {distributed.PROCS_ENV: "2"}
    _, reference_config = write_task(tmp_path / "reference", n_patients=12, train={"epochs": 4})
    _, killed_config = write_task(tmp_path / "killed", n_patients=12, train={"epochs": 4})
    reference = train(reference_config, **two)
    assert reference.returncode == 0, reference.stderr[-3000:]

    fold = tmp_path / "killed" / "results" / "models" / "cxr" / "fold0"
    checkpoint = fold / "checkpoint.pt"
    proc = subprocess.Popen(
        train_command(killed_config),
        env=ddp_env(**two),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)  # the medcnn process only, as a scheduler might
    proc.wait()
    saved = torch.load(checkpoint, weights_only=True)["epoch"]
    # torchrun and its ranks died with it: no epoch is added after the kill.
    time.sleep(10)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == saved < 4
    assert not (fold / "bundle.json").exists()

    resumed = train(killed_config, **two)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {checkpoint} after epoch {saved}" in resumed.stderr
    ref_fold = tmp_path / "reference" / "results" / "models" / "cxr" / "fold0"
    assert_resumed_like_reference(fold, ref_fold, saved)
