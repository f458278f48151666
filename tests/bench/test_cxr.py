"""bench/cxr.py: skips cleanly without the data, and its statistics on known numbers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cxr", ROOT / "bench" / "cxr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_skips_cleanly_without_the_data(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cxr.py"), "--data", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("skipped: no cxr_nih data")


def test_paired_auroc_table_and_swing():
    bench = _bench()
    rng = np.random.default_rng(0)
    n = 120
    targets = (np.arange(n) % 2).astype(int)
    groups = np.repeat(np.arange(n // 2), 2).astype(str)
    views = np.where(np.arange(n) % 4 < 2, "AP", "PA")
    good = targets + rng.normal(0, 0.6, n)
    weak = targets + rng.normal(0, 1.5, n)
    table = bench.auroc_table(targets, {"medcnn": good, "tutorial": weak}, groups, views, 300, 0)
    for subset in ("all", "AP", "PA"):
        entry = table[subset]
        assert entry["medcnn"]["auroc"] > entry["tutorial"]["auroc"]
        lo, hi = entry["medcnn"]["minus_tutorial_ci"]
        assert lo <= entry["medcnn"]["minus_tutorial"] <= hi
    assert table["all"]["n"] == n and table["AP"]["n"] == n // 2
    lo, hi = table["all"]["medcnn"]["minus_tutorial_ci"]
    assert lo > 0  # clearly separated scores: the paired interval excludes no difference
    history = [{"val_auroc": v} for v in (0.5, 0.6, 0.7, 0.9, 0.7, 0.8)]
    assert bench.swing(history, "val_auroc") == pytest.approx(
        0.15
    )  # the second half: 0.9, 0.7, 0.8


def test_summarise_puts_runs_side_by_side_with_the_mean_difference(tmp_path, capsys):
    import json

    bench = _bench()
    for name, (overall, ap) in {"seed0": (0.06, 0.04), "seed1": (0.02, 0.08)}.items():
        entry = lambda d: {  # noqa: E731
            "medcnn": {
                "auroc": 0.8 + d,
                "minus_tutorial": d,
                "minus_tutorial_ci": [d - 0.05, d + 0.05],
            },
            "tutorial": {"auroc": 0.8},
        }
        (tmp_path / name).mkdir()
        (tmp_path / name / "cxr_results.json").write_text(
            json.dumps(
                {
                    "command": f"bench/cxr.py --work {name}",
                    "table": {"all": entry(overall), "AP": entry(ap)},
                    "ece": {"medcnn:calibrated": 0.05},
                }
            )
        )
    assert bench.summarise([tmp_path / "seed0", tmp_path / "seed1", tmp_path / "none"]) == 0
    out = capsys.readouterr().out
    assert "skipped: " in out and "none" in out
    assert "+0.060 (+0.010 to +0.110)" in out
    assert "mean of 2 runs: medcnn - tutorial +0.040 overall, +0.060 within AP films" in out
    assert bench.summarise([tmp_path / "none"]) == 1
