"""One table is enough: the NIH ChestX-ray14 layout (PNG folder + one CSV with file, patient
ID, label, view, sex) as ``inputs[].table``, with the README's config, through validate and
ingest."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from medcnn.cli import main
from medcnn.config import validate_config
from medcnn.ingest.inputs import check_inputs
from medcnn.ingest.manifest import read_manifest
from medcnn.ingest.pipeline import run_ingest

README = Path(__file__).resolve().parents[2] / "README.md"
ROWS = [
    ("images/00000001_000.png", "1", "pneumonia", "AP", "M", "59"),
    ("images/00000001_001.png", "1", "no_finding", "PA", "M", "60"),
    ("images/00000002_000.png", "2", "no_finding", "PA", "F", "33"),
    ("images/00000003_000.png", "3", "pneumonia", "ap", "F", "71"),
]


def readme_config() -> dict:
    """The README's ``# nih.yaml`` block."""
    block = re.search(r"```yaml\n# nih\.yaml\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its nih.yaml example"
    return yaml.safe_load(block.group(1))


def write_layout(root: Path, rows=ROWS) -> Path:
    """A tiny NIH-like copy: a few generated 8-bit PNG films and labels.csv."""
    data = root / "cxr_nih"
    rng = np.random.default_rng(0)
    for name, *_ in rows:
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 32), dtype=np.uint8)).save(path)
    with open(data / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "patient_id", "label", "view", "sex", "age"])
        writer.writerows(rows)
    return data


def config_for(root: Path, raw: dict) -> dict:
    """The README config with its relative paths under ``root``."""
    raw = {**raw, "results": str(root / "results"), "deid": {"secret": "test"}}
    raw["inputs"] = [
        {**item, "path": str(root / item["path"]), "table": str(root / item["table"])}
        for item in raw["inputs"]
    ]
    return validate_config(raw)


def test_readme_nih_config_validates_and_ingests_one_table(tmp_path, capsys):
    write_layout(tmp_path)
    config = config_for(tmp_path, readme_config())
    assert check_inputs(config) == []
    path = tmp_path / "nih.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", "--config", str(path)]) == 0
    assert "valid" in capsys.readouterr().out
    converted, _ = run_ingest(config)
    assert converted == 4
    manifest = read_manifest(tmp_path / "results" / "ingest" / "manifest.tsv")
    manifest = manifest.sort_values(["view", "label"]).reset_index(drop=True)
    # The view reaches the manifest (upper-cased), the label comes from the same table.
    assert manifest["view"].tolist() == ["AP", "AP", "PA", "PA"]
    assert sorted(manifest["label"]) == ["no_finding", "no_finding", "pneumonia", "pneumonia"]
    assert manifest["subject"].nunique() == 3
    assert all(s.startswith("sub-") and s not in {"1", "2", "3"} for s in manifest["subject"])
    assert set(manifest[manifest["view"] == "AP"]["label"]) == {"pneumonia"}
    text = "".join(p.read_text() for p in (tmp_path / "results" / "ingest").rglob("*.json"))
    assert "00000001_000" not in text and '"PatientSex": "F"' in text


def test_validate_names_the_table_and_column_ingest_would_reject(tmp_path, capsys):
    write_layout(tmp_path)
    raw = readme_config()
    raw["inputs"][0]["columns"] = {"file": "image", "subject": "patient", "view": "ViewPos"}
    raw["labels"] = {"columns": ["finding"]}
    config = config_for(tmp_path, raw)
    problems = check_inputs(config)
    assert len(problems) == 1
    assert "labels.csv" in problems[0]
    for named in ("subject -> 'patient'", "view -> 'ViewPos'", "label 'finding'"):
        assert named in problems[0]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", "--config", str(path)]) == 1
    assert "lacks columns" in capsys.readouterr().err


def test_validate_reports_missing_files_by_line_without_their_names(tmp_path):
    rows = [*ROWS, ("images/00000009_000.png", "9", "pneumonia", "PA", "M", "40")]
    data = write_layout(tmp_path, rows)
    (data / "images" / "00000009_000.png").unlink()
    (data / "images" / "00000002_000.png").unlink()
    problems = check_inputs(config_for(tmp_path, readme_config()))
    assert problems == [
        f"{data / 'labels.csv'}: 2 of 5 files in column 'image' not found under {data} "
        "(lines [4, 6])"
    ]
    assert "00000009" not in problems[0]
