"""Every error a user can cause in ingest ends in one message and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medcnn.cli import main
from tests.ingest.hostile_corpus import write_good


def _run(tmp_path: Path, capsys, inputs: list, labels: dict | None = None) -> tuple[int, str]:
    config = {"results": str(tmp_path / "results"), "inputs": inputs}
    if labels is not None:
        config["labels"] = labels
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    status = main(["ingest", "--config", str(path)])
    err = capsys.readouterr().err
    return status, err


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    write_good(tmp_path / "scans")
    return tmp_path / "scans"


def _one_message(err: str) -> str:
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("medcnn: ")]
    return line


def test_missing_input_folder(tmp_path, capsys):
    status, err = _run(tmp_path, capsys, [str(tmp_path / "nowhere")])
    assert status == 2
    assert "inputs[0]: folder" in _one_message(err) and "not found" in err


def test_empty_input_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, err = _run(tmp_path, capsys, [str(tmp_path / "empty")])
    assert status == 2
    assert "is empty" in _one_message(err)


def test_no_scan_at_all(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("nothing to see here " * 20)
    status, err = _run(tmp_path, capsys, [str(tmp_path / "notes")])
    assert status == 2
    assert "no scan could be converted" in _one_message(err) and "files.tsv" in err
    assert (tmp_path / "results" / "ingest" / "files.tsv").exists()


@pytest.mark.parametrize(
    ("content", "wanted"),
    [
        ("PatientID,finding\nGOOD0001,normal\n", "lacks columns ['AccessionNumber']"),
        (b"\x00\xff\xfe\x00garbage\x89PNG", "cannot be read"),
        (None, "not found"),
    ],
)
def test_bad_labels_table(tmp_path, capsys, scans, content, wanted):
    table = tmp_path / "labels.csv"
    if isinstance(content, str):
        table.write_text(content)
    elif content is not None:
        table.write_bytes(content)
    labels = {"path": str(table), "column": "AccessionNumber", "columns": ["finding"]}
    status, err = _run(tmp_path, capsys, [str(scans)], labels)
    assert status == 2
    assert wanted in _one_message(err)


def test_bad_input_pattern(tmp_path, capsys, scans):
    status, err = _run(tmp_path, capsys, [{"path": str(scans), "pattern": "(?P<subject>[)"}])
    assert status == 2
    assert "bad pattern" in _one_message(err)
