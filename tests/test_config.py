from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medcnn.config import (
    ConfigError,
    config_hash,
    load_config,
    tta_enabled,
    validate_config,
)

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {
    "inputs": ["scans"],
    "tasks": {"cxr": {"kind": "classification", "target": {"column": "f", "positive": "p"}}},
}


def test_defaults_are_filled_per_task():
    config = validate_config(MINIMAL)
    task = config["tasks"]["cxr"]
    assert task["network"]["name"] == "densenet121"
    assert task["preprocess"]["size"] == 128
    assert task["train"]["epochs"] == 30
    assert config["results"] == "results"
    assert config["deid"] == {
        "secret": None,
        "keep_identifiers": False,
        "dates": "remove",
        "max_shift_days": 365,
        "mapping": None,
        "free_text": "scrub",
        "uids": "replace",
    }


def test_defaults_are_not_shared_between_tasks():
    two = {**MINIMAL, "tasks": {"a": MINIMAL["tasks"]["cxr"], "b": MINIMAL["tasks"]["cxr"]}}
    config = validate_config(two)
    config["tasks"]["a"]["train"]["epochs"] = 99
    assert config["tasks"]["b"]["train"]["epochs"] == 30


def test_test_time_augmentation_defaults_by_kind_and_follows_the_config():
    nuclei = {"kind": "instance_segmentation", "dims": 2, "modalities": ["SM"]}
    lesion = {"kind": "segmentation", "modalities": ["MR"]}
    tasks = {"cxr": MINIMAL["tasks"]["cxr"], "nuclei": nuclei, "lesion": lesion}
    config = validate_config({**MINIMAL, "tasks": tasks})
    assert {n: t["predict"]["tta"] for n, t in config["tasks"].items()} == dict.fromkeys(tasks)
    chosen = {n: tta_enabled(t) for n, t in config["tasks"].items()}
    assert chosen == {"cxr": False, "nuclei": True, "lesion": False}
    off = {**nuclei, "predict": {"tta": False}}
    on = {**MINIMAL["tasks"]["cxr"], "predict": {"tta": True}}
    config = validate_config({**MINIMAL, "tasks": {"nuclei": off, "cxr": on}})
    assert tta_enabled(config["tasks"]["nuclei"]) is False
    assert tta_enabled(config["tasks"]["cxr"]) is True


def test_unknown_key_is_named():
    bad = {**MINIMAL, "tasks": {"cxr": {**MINIMAL["tasks"]["cxr"], "train": {"epoch": 3}}}}
    with pytest.raises(ConfigError, match=r"tasks\.cxr\.train: .*'epoch' was unexpected"):
        validate_config(bad)


def test_mistyped_value_is_named():
    bad = {**MINIMAL, "tasks": {"cxr": {**MINIMAL["tasks"]["cxr"], "train": {"epochs": "ten"}}}}
    with pytest.raises(ConfigError, match=r"tasks\.cxr\.train\.epochs: 'ten' is not of type"):
        validate_config(bad)


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "resuls": "x"}))
    with pytest.raises(ConfigError, match=r"(?s)c\.yaml.*'resuls' was unexpected"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_config_is_valid():
    config = load_config(REPO / "config" / "config.yaml")
    assert config["demo"]["enabled"] is True
    assert config["demo"]["ct"]["enabled"] and config["demo"]["nuclei"]["enabled"]
    assert config["inputs"][:2] == ["demo/dicom", "demo/ct"]
    assert {t["kind"] for t in config["tasks"].values()} == {
        "classification",
        "segmentation",
        "instance_segmentation",
    }
    # defaults filled per kind
    assert config["tasks"]["cxr"]["train"]["batch_size"] == 16
    assert config["tasks"]["lesion"]["train"]["batch_size"] is None
    assert config["tasks"]["lesion"]["network"]["name"] == "unet"


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_cli_and_snakefile_reject_the_same_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({**MINIMAL, "tasks": {"cxr": {**MINIMAL["tasks"]["cxr"], "lr": 1}}})
    )
    cli = subprocess.run(
        [sys.executable, "-m", "medcnn", "validate", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2
    assert "'lr' was unexpected" in cli.stderr
    smk = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-s",
            str(REPO / "Snakefile"),
            "--configfile",
            str(bad),
            "--directory",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert smk.returncode != 0
    assert "'lr' was unexpected" in smk.stdout + smk.stderr
