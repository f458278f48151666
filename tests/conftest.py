"""Shared fixtures: tiny synthetic cohorts written at test time (fixed seeds, no downloads)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medcnn.config import validate_config
from medcnn.demo.cxr import write_demo_cohort

#: Appended to every PatientID, family name and AccessionNumber of test cohorts, so a grep
#: of the outputs cannot be fooled by a coincidence.
MARK = "ZQXJ"


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory: pytest.TempPathFactory):
    """A 10-patient demo cohort at 64 px (with its broken files) and its image records."""
    out = tmp_path_factory.mktemp("demo")
    images = write_demo_cohort(out, n_patients=10, seed=3, image_size=64, identifier_suffix=MARK)
    return out, images


def tiny_config(demo: Path, results: Path, **task_overrides) -> dict:
    """A validated config for the tiny cohort: 32 px, one epoch."""
    task = {
        "kind": "classification",
        "target": {"column": "finding", "positive": "pneumonia"},
        "preprocess": {"size": 32},
        "train": {"epochs": 1, "batch_size": 4},
        "split": {"test_fraction": 0.3, "val_fraction": 0.3},
    }
    task.update(task_overrides)
    return validate_config(
        {
            "results": str(results),
            "logs": str(results.parent / "logs"),
            "inputs": [str(demo / "dicom")],
            "labels": {"path": str(demo / "labels.csv"), "columns": ["finding"]},
            "deid": {"secret": "test-secret"},
            "tasks": {"cxr": task},
        }
    )


REPO = Path(__file__).resolve().parents[1]


def make_tiny_workflow(
    work: Path, n_patients: int = 8, seed: int = 5, absolute: bool = False, **extra
) -> tuple:
    """A tiny cohort and config for real Snakemake runs: 64 px images, 32 px input, 1 epoch.

    With ``absolute``, every path in the config (inputs, labels, results, logs) is absolute,
    so the workflow can be run from anywhere, the repository root included (`run_from_repo`).

    Returns:
        (scan folder, the DemoImage records, the config file)
    """
    scans = work / "scans"  # the config below names it relative to work
    images = write_demo_cohort(
        scans, n_patients=n_patients, seed=seed, image_size=64, identifier_suffix=MARK
    )
    # Paths relative to the work folder (Snakemake runs there), so two runs in two folders
    # have the same config and the same config hash in their reports.
    root = f"{work}/" if absolute else ""
    where = {"results": f"{work}/results", "logs": f"{work}/logs"} if absolute else {}
    config = {
        **where,
        "inputs": [f"{root}scans/dicom"],
        "labels": {"path": f"{root}scans/labels.csv", "columns": ["finding"]},
        "deid": {"secret": "workflow-test"},
        "resources": {"train": {"threads": 2}},
        "tasks": {
            "cxr": {
                "kind": "classification",
                "target": {"column": "finding", "positive": "pneumonia"},
                "preprocess": {"size": 32},
                # fp32, not auto: auto times bf16 against fp32, and two runs must agree
                "train": {"epochs": 1, "batch_size": 4, "precision": "fp32"},
                "split": {"test_fraction": 0.3, "val_fraction": 0.3},
            }
        },
        **extra,
    }
    configfile = work / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return scans, images, configfile


def run_from_repo(configfile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Exactly the README's own-data command, from the repository root:
    ``snakemake --cores 2 --configfile my.yaml`` (no -s, no --directory)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "2",
            "--configfile",
            str(configfile),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def run_snakemake(workdir: Path, configfile: Path, *extra: str) -> subprocess.CompletedProcess:
    """The real ``snakemake`` on the repository's Snakefile, in ``workdir``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--configfile",
            str(configfile),
            "--directory",
            str(workdir),
            "--cores",
            "2",
            *extra,
        ],
        capture_output=True,
        text=True,
    )
