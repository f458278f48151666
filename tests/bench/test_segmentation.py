"""``bench/segmentation.py --only brats`` end to end on a tiny synthetic BraTS folder (two
cases, a few training steps): every network, the ensemble and the baseline in one table,
the budget in CPU-minutes; and a clean skip without the data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "segmentation.py"


def bench():
    spec = importlib.util.spec_from_file_location("bench_segmentation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def brats_folder(root: Path, n: int = 3) -> Path:
    """BraTS-like cases: a brain-shaped ellipsoid (zero outside), a bright FLAIR tumour."""
    shape = (40, 40, 24)
    ii, jj, kk = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    brain = ((ii - 20) / 17) ** 2 + ((jj - 20) / 18) ** 2 + ((kk - 12) / 11) ** 2 <= 1
    for k in range(n):
        rng = np.random.default_rng(k)
        c = rng.uniform([14, 14, 9], [26, 26, 15])
        tumour = ((ii - c[0]) ** 2 + (jj - c[1]) ** 2 + (kk - c[2]) ** 2 <= 36) & brain
        case = root / "brats2018" / f"case_{k}"
        case.mkdir(parents=True)
        flair = brain * (rng.normal(300, 20, shape) + 250 * tumour)
        t1 = brain * (rng.normal(500, 20, shape) - 100 * tumour)
        affine = np.diag([-2.0, -2.0, 2.0, 1.0])
        for name, data in (("FLAIR", flair), ("T1", t1), ("GT_W", tumour)):
            dtype = np.uint8 if name == "GT_W" else np.float32
            nib.save(nib.Nifti1Image(data.astype(dtype), affine), case / f"{name}.nii.gz")
    return root


def test_brats_leave_one_out_prints_every_method_and_the_cpu_minutes(tmp_path, capsys):
    data = brats_folder(tmp_path / "data", n=2)
    committed = SCRIPT.parent / "results" / "segmentation.txt"
    committed_before = committed.read_bytes() if committed.exists() else None
    before = torch.get_num_threads()
    try:
        rc = bench().main(
            [
                *("--data", str(data), "--only", "brats", "--threads", "1"),
                *("--work", str(tmp_path / "work")),
                *("--brats-cpu-minutes", "0.08", "--brats-spacing", "4"),
                *("--brats-patch", "8", "8", "8", "--brats-patch-2d", "16", "16"),
                *("--brats-features-2d", "4", "--brats-batch-2d", "4"),
            ]
        )
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    # Without --out the table goes to the work folder only; the committed one is left alone.
    text = (tmp_path / "work" / "segmentation.txt").read_text()
    assert json.loads((tmp_path / "work" / "segmentation.json").read_text())["command"]
    if committed_before is not None:
        assert committed.read_bytes() == committed_before
    assert "leave one case out over 2 cases" in text
    header = next(line for line in text.splitlines() if line.startswith("held-out case"))
    for name in ("3D U-Net", "2D slice U-Net", "ensemble", "baseline"):
        assert name in header
    cases = [line.split()[0] for line in text.splitlines() if line.startswith("case_")]
    assert cases == ["case_0", "case_1"]
    assert "training budget 0.08 CPU-minutes" in text
    assert "2D slice U-Net 0.06" in text and "3D U-Net 0.02" in text  # the 0.75 / 0.25 split
    rows = [json.loads(line) for line in (tmp_path / "work" / "brats" / "rows.jsonl").open()]
    assert len(rows) == 2 and {"3d", "2d", "ensemble", "baseline"} <= set(rows[0])
    assert rows[0]["2d"]["patch"] == [16, 16]
    assert 0.0 <= rows[0]["baseline"]["dice"] <= 1.0


def test_brats_skips_cleanly_without_the_data(tmp_path, capsys):
    out = tmp_path / "table.txt"
    assert bench().main(["--data", str(tmp_path), "--only", "brats", "--out", str(out)]) == 0
    assert "skipped: no brats2018" in capsys.readouterr().out
    assert not out.exists()


def test_processes_sharing_a_work_folder_ingest_once(tmp_path, monkeypatch):
    """Folds run as separate processes on one --work: the second waits for the first's
    ingest and reads its manifest instead of ingesting into the same folder again."""
    import threading
    import time

    import medcnn.stages.ingest

    calls = []

    def slow_ingest(config):
        calls.append(threading.get_ident())
        time.sleep(0.3)
        manifest = Path(config["results"]) / "ingest" / "manifest.tsv"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("subject\trole\tpath\n")

    module = bench()
    monkeypatch.setattr(medcnn.stages.ingest, "run", slow_ingest)
    config = {"results": str(tmp_path / "shared" / "results")}
    found = []
    threads = [
        threading.Thread(target=lambda: found.append(module.ingest_nuclei(config)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert found == [[], []]


def test_fold_lines_give_the_threads_the_fold_trained_with(tmp_path):
    """A --reuse-models re-evaluation at 2 threads of folds trained at 1 says 1-core."""
    import argparse

    module = bench()
    m = {"dice": 0.9, "aji": 0.75, "pq": 0.7, "sq": 0.8, "dq": 0.85, "f1": 0.85}
    row = {"variant": "full", "type": "fluorescence", "model": m, "otsu_cc": m, "otsu_ws": m}
    summary = {
        "variant": "full",
        "fold": 0,
        "n_train": 78,
        "n_val": 8,
        "n_test": 43,
        "train_minutes": 20.0,
        "clock": "cpu",
        "train_threads": 1,
        "train_wall_minutes": 20.1,
        "fit_cpu_minutes": 0.0,
        "epochs": 73,
        "best_epoch": 70,
        "val_dice": 0.6,
        "max_val_dice_touching": 0.2,
        "precision": "bf16",
        "postprocess": {},
        "profile_types": {},
    }
    args = argparse.Namespace(
        nuclei_folds=3, nuclei_variants=["full"], nuclei_minutes=60, threads=2
    )
    r = {
        "cases": [{"type": "fluorescence"}],
        "summaries": [summary],
        "rows": [{**row, "flags": []}],
    }
    lines = module.nuclei_table({**r, "total_s": 60.0}, args)
    fold_line = next(x for x in lines if "fold 0:" in x)
    assert "training 20.0 min of 1-core CPU time" in fold_line
    assert any("training in total 20.0 min of 1-core CPU time" in x for x in lines)
    assert any(x.split()[-1] == "0.850" for x in lines if x.startswith("U-Net"))
