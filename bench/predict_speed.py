"""End-to-end prediction speed: a folder of radiographs to per-patient reports with a bundle.

Usage: ``python bench/predict_speed.py [--patients 1000] [--cores 2]``

Trains a tiny bundle once (one epoch, 64 px; the network's cost does not depend on how well
it was trained), writes a synthetic folder of ``--patients`` radiograph patients, then times
the real predict-only workflow (``snakemake --cores N``: ingest, per-subject preprocessing
with the bundle's plans, prediction, saliency with faithfulness, per-patient HTML + PDF
reports, cohort report) in one command. The baseline row is the bare network forward pass for
the same images in this process: what the model itself costs, next to what a patient costs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medcnn.demo.cxr import write_demo_cohort  # noqa: E402
from medcnn.models.bundle import load_bundle  # noqa: E402


def snakemake(work: Path, config: dict, cores: int) -> float:
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--configfile",
            str(work / "config.yaml"),
            "--directory",
            str(work),
            "--cores",
            str(cores),
            "--quiet",
        ],
        check=True,
    )
    return time.perf_counter() - start


def stage_seconds(folder: Path) -> dict[str, tuple[int, float, float]]:
    """Jobs, summed wall seconds and CPU seconds per stage from Snakemake's benchmark TSVs."""
    stages: dict[str, tuple[int, float, float]] = {}
    for path in sorted(folder.rglob("*.tsv")):
        stage = path.relative_to(folder).parts[0]
        header, values = path.read_text().splitlines()[:2]
        row = dict(zip(header.split("\t"), values.split("\t"), strict=True))
        jobs, seconds, cpu = stages.get(stage, (0, 0.0, 0.0))
        stages[stage] = (jobs + 1, seconds + float(row["s"]), cpu + float(row["cpu_time"]))
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="network input (pixels)")
    parser.add_argument("--work", type=Path, default=None, help="keep everything here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work or Path(scratch)
        train = tmp / "train"
        write_demo_cohort(train / "scans", n_patients=12, seed=1, image_size=128)
        snakemake(
            train,
            {
                "inputs": ["scans/dicom"],
                "labels": {"path": "scans/labels.csv", "columns": ["finding"]},
                "tasks": {
                    "cxr": {
                        "kind": "classification",
                        "target": {"column": "finding", "positive": "pneumonia"},
                        "preprocess": {"size": args.size},
                        "train": {"epochs": 1, "batch_size": 4, "precision": "fp32"},
                    }
                },
            },
            args.cores,
        )
        bundle = train / "results" / "models" / "cxr"
        work = tmp / "predict"
        images = write_demo_cohort(
            work / "scans", n_patients=args.patients, seed=2, image_size=256, broken_files=False
        )
        wall = snakemake(
            work, {"inputs": ["scans/dicom"], "bundles": {"cxr": {"path": str(bundle)}}}, args.cores
        )
        reports = len(list((work / "results" / "reports").glob("sub-*.html")))
        stages = stage_seconds(work / "results" / "benchmarks")

        model, _ = load_bundle(bundle / "fold0")
        torch.set_num_threads(args.cores)
        batch = torch.rand(len(images), 1, args.size, args.size)
        start = time.perf_counter()
        with torch.no_grad():
            for chunk in batch.split(32):
                model(chunk)
        forward = time.perf_counter() - start

    n = args.patients
    print(f"\n{n} patients, {len(images)} radiographs, --cores {args.cores}, {reports} reports\n")
    print("| what | total s | s per patient | patients per minute |")
    print("|---|---|---|---|")
    print(f"| workflow: ingest → report | {wall:.1f} | {wall / n:.2f} | {60 * n / wall:.1f} |")
    print(
        f"| baseline: network forward only | {forward:.1f} | {forward / n:.3f} | "
        f"{60 * n / forward:.0f} |"
    )
    print(f"\nworkflow / forward: {wall / forward:.0f}x\n")
    print("| stage (Snakemake benchmark files) | jobs | job seconds | CPU seconds | per patient |")
    print("|---|---|---|---|---|")
    for stage, (jobs, seconds, cpu) in stages.items():
        print(f"| {stage} | {jobs} | {seconds:.1f} | {cpu:.1f} | {seconds / n:.2f} |")


if __name__ == "__main__":
    main()
