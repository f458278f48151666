"""Kill -9 in the middle of training, run again: it resumes and ends as if never killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.train.conftest import write_task
from tests.train.resume_checks import assert_resumed_like_reference

REPO = Path(__file__).resolve().parents[2]


def train_command(configfile: Path) -> list[str]:
    # One thread: the same reduction order in both runs, and no oversubscribed cores.
    return [sys.executable, "-m", "medcnn", "train", "--config", str(configfile), "--task", "cxr"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    settings = {"train": {"epochs": 4, "batch_size": 4, "channels_last": True}}
    _, reference_config = write_task(tmp_path / "reference", n_patients=12, **settings)
    _, killed_config = write_task(tmp_path / "killed", n_patients=12, **settings)

    reference = subprocess.run(
        train_command(reference_config), env=env(), capture_output=True, text=True
    )
    assert reference.returncode == 0, reference.stderr[-2000:]

    fold = tmp_path / "killed" / "results" / "models" / "cxr" / "fold0"
    proc = subprocess.Popen(
        train_command(killed_config),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (fold / "checkpoint.pt").exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    first = torch.load(fold / "checkpoint.pt", weights_only=True)["epoch"]
    time.sleep(0.5)  # into the next epoch's batches
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (fold / "bundle.json").exists()
    saved = torch.load(fold / "checkpoint.pt", weights_only=True)["epoch"]
    assert first <= saved < 4

    resumed = subprocess.run(
        train_command(killed_config), env=env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {fold / 'checkpoint.pt'} after epoch {saved}" in resumed.stderr
    assert not (fold / "checkpoint.pt").exists()

    ref_fold = tmp_path / "reference" / "results" / "models" / "cxr" / "fold0"
    assert_resumed_like_reference(fold, ref_fold, saved)
