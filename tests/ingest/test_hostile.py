"""Ingest over a hostile corpus: each bad file meets its fate, the good patients come through
unchanged, every file is accounted for, nothing is read from outside the inputs or written
into them, and no identifier reaches any output (NIfTI, tables, log, reports, PDF)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import warnings
import zlib
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from medcnn.config import validate_config
from medcnn.ingest.context import FATES
from medcnn.ingest.manifest import read_files, read_manifest
from medcnn.ingest.pipeline import run_ingest
from medcnn.io.deid import pseudonym
from medcnn.io.scrub import printable
from tests.ingest.hostile_corpus import NAME_IN_PATH, write_good, write_hostile
from tests.io.synthetic import ACCESSION, BIRTH_DATE, PATIENT_ID, PATIENT_NAME, STUDY_DATE

SECRET = "hostile-secret"


def _config(results: Path, root: Path, **ingest) -> dict:
    return validate_config(
        {
            "results": str(results),
            "inputs": [str(root)],
            "deid": {"secret": SECRET},
            "ingest": {"limits": {"decode_seconds": 20}, **ingest},
        }
    )


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "scans", base / "outside"
    outside.mkdir()
    subjects = write_good(root)
    good = base / "good"
    run_ingest(_config(good, root, show_paths=True))
    cases = write_hostile(root, outside)
    before = _snapshot(base)
    results = base / "results"
    n_images, n_quarantined = run_ingest(_config(results, root, show_paths=True))
    assert _snapshot(base) == {**before, **_snapshot(results), **_snapshot(good)}
    return {
        "root": root,
        "outside": outside,
        "good": good,
        "results": results,
        "cases": cases,
        "subjects": subjects,
        "counts": (n_images, n_quarantined),
    }


def test_each_hostile_file_meets_its_fate(corpus):
    files = read_files(corpus["results"] / "ingest" / "files.tsv")
    wrong = []
    for case in corpus["cases"]:
        rows = files[files["file"] == case.path]
        if len(rows) < 1:
            wrong.append(f"{case.name}: no row for {case.path!r}")
            continue
        fates = set(rows["fate"])
        details = " | ".join(rows["detail"])
        if fates != {case.fate} or case.reason not in details:
            wrong.append(
                f"{case.name}: {sorted(fates)} {details!r}, wanted {case.fate} {case.reason!r}"
            )
    assert not wrong, "\n".join(wrong)
    assert len(corpus["cases"]) >= 45


def test_every_file_found_is_accounted_for_once(corpus):
    root = corpus["root"]
    files = read_files(corpus["results"] / "ingest" / "files.tsv")
    assert set(files["fate"]) == {"converted", "quarantined", "skipped"}
    expected = set()
    for dirpath, dirnames, names in os.walk(root):
        here = Path(dirpath)
        for name in list(dirnames):
            if name.startswith(".") or (here / name).is_symlink():
                expected.add(here / name)  # listed as one skipped entry, not walked
                dirnames.remove(name)
        expected.update(here / name for name in names)
    shown = {
        "/".join(printable(n) for n in [root.name, *p.relative_to(root).parts]) for p in expected
    }
    listed = set(files["file"])
    assert shown == listed
    # One row per path, except a DICOMDIR: itself, plus one row per entry that points outside.
    repeated = files["file"][files["file"].duplicated()]
    assert set(repeated) <= {f for f in listed if f.endswith("DICOMDIR")}
    manifest = read_manifest(corpus["results"] / "ingest" / "manifest.tsv")
    converted = files[files["fate"] == "converted"]
    assert set(converted["detail"].str.split("/").str[0]) == set(manifest["subject"])
    assert corpus["counts"][1] == int((files["fate"] == "quarantined").sum())


def test_the_good_patients_come_through_unchanged(corpus):
    secret = SECRET.encode()
    good, results = corpus["good"], corpus["results"]
    before = read_manifest(good / "ingest" / "manifest.tsv")
    after = read_manifest(results / "ingest" / "manifest.tsv")
    subjects = {pseudonym(s, secret, "sub-") for s in corpus["subjects"]}
    assert set(before["subject"]) == subjects
    mine = after[after["subject"].isin(subjects)].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, before.reset_index(drop=True))
    for rel in list(before["path"]) + list(before["sidecar"]):
        assert (good / rel).read_bytes() == (results / rel).read_bytes(), rel


def test_nothing_outside_the_inputs_is_read(corpus):
    manifest = read_manifest(corpus["results"] / "ingest" / "manifest.tsv")
    for outsider in ("OUTSIDE01", "OUTSIDE02"):
        assert pseudonym(outsider, SECRET.encode(), "sub-") not in set(manifest["subject"])


def test_a_radiograph_named_roi_stays_an_image(corpus):
    manifest = read_manifest(corpus["results"] / "ingest" / "manifest.tsv")
    for patient in ("HOST21", "HOST22"):
        rows = manifest[manifest["subject"] == pseudonym(patient, SECRET.encode(), "sub-")]
        assert list(rows["role"]) == ["image"], patient


#: Everything planted: the synthetic identifiers, the hostile patients' IDs, the names and
#: date in paths.
PLANTED = [
    PATIENT_ID,
    PATIENT_NAME,
    PATIENT_NAME.replace("^", " "),
    "JANE",
    ACCESSION,
    BIRTH_DATE,
    STUDY_DATE,
    "ZQXJ",
    NAME_IN_PATH,
    "Smithson",
    "MRN4417",
    "20190607",
    "HOST0",
    "HOST1",
    "HOST2",
    "GOOD000",
    "OUTSIDE0",
]


def _text_of(path: Path) -> bytes:
    blob = path.read_bytes()
    if path.name.endswith(".gz"):
        blob = gzip.decompress(blob)
    if path.suffix == ".pdf":
        # fpdf2 writes text with the core fonts as literal strings in deflated streams.
        for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", blob, re.S):
            with contextlib.suppress(zlib.error):
                blob += b"\n" + zlib.decompress(match.group(1))
    return blob


def test_no_identifier_in_any_output(tmp_path_factory, caplog):
    base = tmp_path_factory.mktemp("phi")
    root, outside = base / "scans", base / "outside"
    outside.mkdir()
    write_good(root)
    write_hostile(root, outside)
    uids = set()
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                try:
                    ds = pydicom.dcmread(path, stop_before_pixels=True)
                except Exception:  # noqa: BLE001 - the hostile files
                    continue
                for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                    if ds.get(keyword):
                        uids.add(str(ds.get(keyword)))
    assert len(uids) > 50
    results = base / "results"
    config = _config(results, root)
    config["tasks"] = {}
    caplog.clear()  # the corpus was written and read above: only ingest's own records count
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_ingest(config)
        from medcnn.stages.report.cohort import render_cohort
        from medcnn.stages.report.subject import render_subject

        render_cohort(config)
        subject = read_manifest(results / "ingest" / "manifest.tsv")["subject"].iloc[0]
        render_subject(config, subject)
    messages = [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    log_text = "\n".join(messages).encode()
    outputs = [p for p in results.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pdf" for p in outputs) and any(p.suffix == ".gz" for p in outputs)
    hits = []
    for source, blob in [("log", log_text)] + [(str(p), _text_of(p)) for p in outputs]:
        lowered = blob.lower()
        hits += [f"{t} in {source}" for t in PLANTED if t.lower().encode() in lowered]
        hits += [f"UID {u} in {source}" for u in uids if u.encode() in blob]
        # Absolute input paths (the folder names may be identifiers themselves).
        hits += [f"path {p} in {source}" for p in (root, outside) if str(p).encode() in blob]
        # No raw input file name in text outputs (PDF and NIfTI are binary).
        text_like = source == "log" or Path(source).suffix in (".tsv", ".json", ".html")
        if text_like and (b"\xff\xfe" in blob or re.search(rb"a\nb\.dcm", blob)):
            hits.append(f"raw file name in {source}")
    assert not hits, "\n".join(hits[:20])
    files = read_files(results / "ingest" / "files.tsv")
    assert files["file"].str.contains("Smithson").sum() == 0
    # The cohort report's file counts add up to the files found.
    counts = json.loads((results / "reports" / "cohort.json").read_text())["summary"]["files"]
    assert counts["found"] == len(files) == sum(counts[k] for k in FATES)
    assert {k: counts[k] for k in FATES} == files["fate"].value_counts().to_dict()
    assert files["file"].str.contains(r"/d-[0-9a-f]{10}/f-[0-9a-f]{10}\.dcm$").any()
