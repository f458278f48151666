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


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory):
    """The tiny radiograph cohort through the whole workflow (shared by the workflow and the
    browser tests: one run a session)."""
    from tests.ingest.test_pipeline import snapshot

    work = tmp_path_factory.mktemp("workflow")
    # The README's own-data command as a user types it, from the repository root (whose
    # config/config.yaml is the demo's) with a config file of the user's own.
    scans, images, configfile = make_tiny_workflow(work, absolute=True)
    before = snapshot(scans)
    result = run_from_repo(configfile)
    (work / "snakemake.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, scans, images, before, configfile


@pytest.fixture(scope="session")
def seg_run(tmp_path_factory):
    """Tiny CT-lesion and nuclei cohorts through the whole workflow (shared by the
    segmentation workflow and the browser tests: one run a session)."""
    from medcnn.demo.segmentation import write_ct_cohort, write_nuclei_cohort

    work = tmp_path_factory.mktemp("segworkflow")
    cases = write_ct_cohort(work / "scans" / "ct", n_patients=5, size=32, n_slices=12, seed=2)
    tiles = write_nuclei_cohort(work / "scans" / "nuclei", n_tiles=5, size=64, seed=2)
    train = {"epochs": 2, "precision": "fp32", "seed": 0}
    config = {
        "inputs": [
            "scans/ct",
            {
                "path": "scans/nuclei",
                "pattern": "(?P<subject>[^/]+)/",
                "modality": "SM",
                "instances": "/masks/",
            },
        ],
        "deid": {"secret": "workflow-test"},
        # one batch per stage: the batch layout is the classification workflow's test
        "batches": {"min_batches": 1},
        "resources": {"train": {"threads": 2}},
        "report": {"bootstrap": 50},
        "tasks": {
            "lesion": {
                "kind": "segmentation",
                "dims": 3,
                "modalities": ["CT"],
                "split": {"test_fraction": 0.4, "val_fraction": 0.34},
                "train": train,
                "segmentation": {"memory_mb": 200, "min_size": 0},
            },
            # the same lesions by a 2D network on the axial slices, with one context slice
            # per side (tests/test_workflow_slices.py)
            "lesion_slices": {
                "kind": "segmentation",
                "dims": 3,
                "modalities": ["CT"],
                "split": {"test_fraction": 0.4, "val_fraction": 0.34},
                "train": {**train, "epochs": 3},
                "segmentation": {
                    "memory_mb": 200,
                    "min_size": 0,
                    "slices": {"enabled": True, "context": 1},
                },
            },
            "nuclei": {
                "kind": "instance_segmentation",
                "dims": 2,
                "modalities": ["SM"],
                "split": {"test_fraction": 0.4, "val_fraction": 0.34},
                # long enough for the touching boundary to learn (class weights `auto`:
                # 1/1/2/4); validated every epoch
                "train": {**train, "epochs": 6, "learning_rate": 0.003, "val_every": 1},
                "segmentation": {"classes": ["nucleus"], "memory_mb": 200, "min_size": 0},
            },
        },
    }
    configfile = work / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = run_snakemake(work, configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, cases, tiles
