from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from medcnn.config import ConfigError, validate_config
from medcnn.ingest.discovery import (
    InputSpec,
    classify,
    dicomdir_files,
    discover,
    identify,
    parse_inputs,
)
from medcnn.io.dicom import looks_like_dicom


@pytest.fixture()
def dicomdir_copy(tmp_path) -> Path:
    source = Path(get_testdata_file("DICOMDIR")).parent
    target = tmp_path / "cd"
    shutil.copytree(source, target)
    return target


def test_dicomdir_lists_its_files_even_with_changed_case(dicomdir_copy):
    # A CD copied onto a case-preserving file system may lower-case the names.
    (dicomdir_copy / "77654033" / "CR1").rename(dicomdir_copy / "77654033" / "cr1")
    files = dicomdir_files(dicomdir_copy / "DICOMDIR")
    assert len(files) == 31
    assert dicomdir_copy / "77654033" / "cr1" / "6154" in files
    found = [c for c in discover([dicomdir_copy]) if c.kind == "dicom"]
    paths = [c.path for c in found]
    assert len(paths) == len(set(paths)), "a file was offered twice"
    assert paths[:31] == files  # DICOMDIR records first, in their order


def test_dicom_is_recognised_by_content_not_extension(tmp_path):
    content = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "scan.png").write_bytes(content)
    (tmp_path / "image").write_bytes(content)
    (tmp_path / "notes.txt").write_text("hello")
    skipped = []
    kinds = {c.path.name: c.kind for c in discover([tmp_path], skipped=skipped)}
    assert kinds == {"scan.png": "dicom", "image": "dicom"}
    assert [(s.path.name, s.reason) for s in skipped] == [("notes.txt", "too small (5 bytes)")]
    assert looks_like_dicom(tmp_path / "scan.png")


def test_nifti_and_images_are_classified(tmp_path):
    for name in ("a.nii", "b.nii.gz", "c.PNG", "d.tiff", "e.jpg"):
        (tmp_path / name).write_bytes(b"x" * 200)
    kinds = {p.name: classify(p, 200) for p in tmp_path.iterdir()}
    assert kinds == {
        "a.nii": "nifti",
        "b.nii.gz": "nifti",
        "c.PNG": "image",
        "d.tiff": "image",
        "e.jpg": "image",
    }


def test_subject_from_pattern_table_or_folder(tmp_path):
    (tmp_path / "P01" / "2020").mkdir(parents=True)
    image = tmp_path / "P01" / "2020" / "x.png"
    image.write_bytes(b"")
    spec = parse_inputs(
        [{"path": str(tmp_path), "pattern": r"(?P<subject>P\d+)/(?P<study>\d+)/(?P<key>.*)"}]
    )[0]
    cand = next(c for c in discover([spec]) if c.path == image)
    assert identify(cand, {}) == {
        "subject": "P01",
        "study": "2020",
        "key": "x.png",
        "description": "",
    }

    table = tmp_path / "subjects.csv"
    table.write_text("file,subject,study\nP01/2020/x.png,S9,baseline\n")
    spec = parse_inputs([{"path": str(tmp_path), "table": str(table)}])[0]
    cand = next(c for c in discover([spec]) if c.path == image)
    assert (
        identify(cand, {table: {"P01/2020/x.png": {"subject": "S9", "study": "baseline"}}})[
            "subject"
        ]
        == "S9"
    )

    plain = next(c for c in discover([InputSpec(tmp_path)]) if c.path == image)
    assert identify(plain, {}) == {
        "subject": "P01",
        "study": "1",
        "key": "P01/2020/x.png",
        "description": "",
    }


def test_bad_patterns_are_configuration_errors():
    with pytest.raises(ValueError, match="no \\(\\?P<subject>"):
        parse_inputs([{"path": "x", "pattern": "(?P<study>.*)"}])
    with pytest.raises(ValueError, match="bad pattern"):
        parse_inputs([{"path": "x", "pattern": "(unclosed"}])


def test_schema_accepts_folder_strings_and_objects_with_defaults():
    config = validate_config(
        {
            "inputs": ["a", {"path": "b", "pattern": "(?P<subject>[^/]+)/"}],
            "tasks": {"t": {"kind": "classification", "target": {"column": "f", "positive": "p"}}},
        }
    )
    assert config["inputs"][1]["modality"] == "OT" and config["inputs"][1]["table"] is None
    assert config["ingest"]["uneven_spacing"] == "resample"
    assert config["ingest"]["burned_in"] == "keep"
    assert config["deid"]["dates"] == "remove" and config["deid"]["mapping"] is None
    with pytest.raises(ConfigError, match="inputs"):
        validate_config({"inputs": [{"folder": "b"}], "tasks": config["tasks"]})


def test_links_outside_are_listed_unless_followed(tmp_path):
    inputs, outside = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (outside / "sub").mkdir(parents=True)
    content = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (outside / "a.dcm").write_bytes(content)
    (outside / "sub" / "b.dcm").write_bytes(content)
    os.symlink(outside / "a.dcm", inputs / "a.dcm")
    os.symlink(outside / "sub", inputs / "linked")
    skipped = []
    assert list(discover([inputs], skipped=skipped)) == []
    assert sorted((s.path.name, s.reason) for s in skipped) == [
        ("a.dcm", "symlink resolves outside the inputs (ingest.follow_links: false)"),
        ("linked", "symlink resolves outside the inputs (ingest.follow_links: false)"),
    ]
    followed = [c.path for c in discover([inputs], follow_links=True)]
    assert followed == [inputs / "a.dcm", inputs / "linked" / "b.dcm"]


def test_dicomdir_entries_stay_inside(tmp_path, dicomdir_copy):
    skipped = []
    files = dicomdir_files(dicomdir_copy / "DICOMDIR", [tmp_path / "elsewhere"], skipped)
    # The DICOMDIR's own folder is not among the roots: every entry resolves outside them.
    assert files == [] and skipped
    assert {s.reason for s in skipped} == {"DICOMDIR entry resolves outside the inputs"}
