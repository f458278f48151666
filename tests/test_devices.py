"""GPU assignment on one machine, with a simulated device count (no GPU needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from medcnn.devices import claim_gpus

# A job that claims GPUs, records what it saw and when, and holds them for a while.
JOB = """
import json, os, sys, time
from medcnn.devices import claim_gpus
n, hold, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
share = int(sys.argv[4]) if len(sys.argv) > 4 else 1
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else None
with claim_gpus(n, jobs_per_gpu=share, poll_seconds=0.05, timeout=timeout):
    start = time.time()
    seen = os.environ["CUDA_VISIBLE_DEVICES"]
    time.sleep(hold)
    end = time.time()
json.dump({"devices": seen, "start": start, "end": end}, open(out, "w"))
"""


@pytest.fixture
def gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDCNN_GPU_COUNT", "2")
    monkeypatch.setenv("MEDCNN_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return tmp_path


def run_jobs(tmp_path, n_jobs: int, per_job: int, hold: float, share: int = 1) -> list[dict]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                JOB,
                str(per_job),
                str(hold),
                str(tmp_path / f"{i}.json"),
                str(share),
            ]
        )
        for i in range(n_jobs)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    return [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(n_jobs)]


def test_concurrent_jobs_never_share_a_gpu(gpus):
    records = run_jobs(gpus, n_jobs=4, per_job=1, hold=1.0)
    # At any moment, the jobs holding a device hold different devices.
    for a in records:
        for b in records:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["devices"] != b["devices"], (a, b)
    assert {r["devices"] for r in records} == {"0", "1"}
    # Four one-second jobs on two devices take at least two rounds.
    span = max(r["end"] for r in records) - min(r["start"] for r in records)
    assert span >= 1.9


def test_multi_gpu_claim_and_restore(gpus):
    with claim_gpus(2) as devices:
        assert devices == [0, 1]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
        # another job finds nothing free and gives up at its timeout
        other = subprocess.run(
            [sys.executable, "-c", JOB, "1", "0", str(gpus / "o.json"), "1", "0.3"],
            env={k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"},
            capture_output=True,
            text=True,
        )
        assert other.returncode != 0 and "no 1 free GPU(s) within 0.3 s" in other.stderr
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    with pytest.raises(RuntimeError, match="asks for 3 GPU"):
        with claim_gpus(3):
            pass


def test_sharing_when_configured(gpus):
    # two slots per device: four one-second jobs on two devices run all at once
    records = run_jobs(gpus, n_jobs=4, per_job=1, hold=1.5, share=2)
    assert sorted(r["devices"] for r in records) == ["0", "0", "1", "1"]
    assert max(r["start"] for r in records) < min(r["end"] for r in records)


def test_scheduler_choice_is_kept(gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with claim_gpus(1) as devices:
        assert devices == []
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_lock_released_when_a_job_is_killed(gpus):
    holder = subprocess.Popen([sys.executable, "-c", JOB, "2", "60", str(gpus / "k.json")])
    time.sleep(3)  # let it claim both devices
    holder.kill()
    holder.wait()
    with claim_gpus(2, timeout=10, poll_seconds=0.05) as devices:
        assert devices == [0, 1]
