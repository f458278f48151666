"""Ingest throughput: files/s and MB/s of ``run_ingest`` against plain pydicom decoding.

Usage: ``python bench/ingest_speed.py [--series 10 --slices 40 --size 128]``

Rows:
* ``pydicom read+decode``: ``dcmread`` + ``pixel_array`` of every DICOM file, the floor that
  any converter pays;
* ``medcnn ingest (first run)``: discovery, headers, grouping, stacking, NIfTI + sidecar
  writing, manifest;
* ``medcnn ingest (re-run)``: the same again with the outputs in place (nothing rewritten).

Data: the dcm2niix QA set in ``../shared/data/dicom_qa/dcm_qa_nih/In`` (rows skipped when it
is absent) and a synthetic folder of axial MR series written here with a fixed seed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medcnn.config import validate_config  # noqa: E402
from medcnn.ingest.pipeline import run_ingest  # noqa: E402
from medcnn.io.dicom import looks_like_dicom  # noqa: E402

QA = REPO.parent / "shared" / "data" / "dicom_qa" / "dcm_qa_nih" / "In"


def write_synthetic(folder: Path, n_series: int, n_slices: int, size: int) -> None:
    """``n_series`` axial MR series of ``n_slices`` slices of ``size``^2 int16 (seed 0)."""
    sys.path.insert(0, str(REPO))
    from tests.io.synthetic import random_volume, slice_ipps, write_series

    for s in range(n_series):
        write_series(
            folder / f"series{s:03d}",
            random_volume((n_slices, size, size), seed=s),
            slice_ipps(n_slices, spacing=1.5),
        )


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and looks_like_dicom(p))


def pydicom_baseline(folder: Path) -> None:
    for path in dicom_files(folder):
        _ = pydicom.dcmread(path).pixel_array


def medcnn_ingest(folder: Path, results: Path) -> Callable[[], None]:
    config = validate_config(
        {
            "results": str(results),
            "inputs": [str(folder)],
            "deid": {"secret": "bench"},
            "tasks": {"t": {"kind": "classification", "target": {"column": "f", "positive": "p"}}},
        }
    )
    return lambda: run_ingest(config)


def timed(func: Callable[[], None], repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return float(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        synthetic = tmp_path / "synthetic"
        write_synthetic(synthetic, args.series, args.slices, args.size)
        datasets = [("synthetic", synthetic)]
        if QA.is_dir():
            datasets.insert(0, ("dcm_qa_nih", QA))
        else:
            print(f"(real-data rows skipped: {QA} not found)")
        for name, folder in datasets:
            files = dicom_files(folder)
            megabytes = sum(p.stat().st_size for p in files) / 1e6
            results = tmp_path / f"results-{name}"
            first = timed(medcnn_ingest(folder, results), 1)
            rerun = timed(medcnn_ingest(folder, results), args.repeat)
            base = timed(lambda f=folder: pydicom_baseline(f), args.repeat)
            for method, seconds in (
                ("pydicom read+decode", base),
                ("medcnn ingest (first run)", first),
                ("medcnn ingest (re-run)", rerun),
            ):
                rows.append((name, len(files), megabytes, method, seconds))

    header = (
        f"{'data':<12} {'files':>6} {'MB':>7}  {'method':<27} {'s':>7} {'files/s':>8} {'MB/s':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, n, mb, method, seconds in rows:
        print(
            f"{name:<12} {n:>6} {mb:>7.1f}  {method:<27} {seconds:>7.2f} "
            f"{n / seconds:>8.1f} {mb / seconds:>7.2f}"
        )


if __name__ == "__main__":
    main()
