"""Re-runs decode nothing that did not change; worker processes change nothing in the outputs.

Decoding is counted across processes (the workers are forked, so they inherit the counting
wrapper): every call of the bounded decoder appends one line to a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

import medcnn.ingest.convert_dicom as convert_dicom
import medcnn.ingest.convert_other as convert_other
import medcnn.ingest.passes as passes
from medcnn.config import validate_config
from medcnn.ingest.cache import CACHE
from medcnn.ingest.manifest import read_files, read_manifest
from medcnn.ingest.pipeline import run_ingest
from medcnn.ingest.workers import resolve_workers
from tests.ingest.hostile_corpus import ct_series, write_good, write_hostile
from tests.io.synthetic import PATIENT_ID

SECRET = "cache-secret"


def _config(results: Path, root: Path, workers: int = 2, **deid) -> dict:
    return validate_config(
        {
            "results": str(results),
            "inputs": [str(root)],
            "deid": {"secret": SECRET, **deid},
            "ingest": {"workers": workers, "show_paths": True, "limits": {"decode_seconds": 20}},
        }
    )


@pytest.fixture
def decodes(tmp_path, monkeypatch):
    """A function returning the decodes made so far: (what, folder of its first file)."""
    log = tmp_path / "decodes.log"
    log.touch()

    def counting(original):
        def wrapper(func, args, *rest, **kw):
            first = args[0]
            path = Path(first) if isinstance(first, (str, Path)) else first[0].path
            with open(log, "a") as fh:  # O_APPEND: one whole line per call, from any process
                fh.write(f"{func.__name__}\t{path.parent.name}\t{os.getpid()}\n")
            return original(func, args, *rest, **kw)

        return wrapper

    monkeypatch.setattr(convert_dicom, "run_bounded", counting(convert_dicom.run_bounded))
    monkeypatch.setattr(convert_other, "run_bounded", counting(convert_other.run_bounded))
    return lambda: [tuple(line.split("\t")[:2]) for line in log.read_text().splitlines()]


def _outputs(results: Path) -> dict[str, tuple[str, int]]:
    """Hash and mtime of every output but the cache itself."""
    return {
        str(p.relative_to(results)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(results.rglob("*"))
        if p.is_file() and p.name != CACHE
    }


@pytest.fixture
def cohort(tmp_path):
    root = tmp_path / "scans"
    write_good(root)
    ct_series(root / "more" / "ct3", "GOOD0005", seed=9)
    write_hostile(root, tmp_path / "outside")
    return root


def test_rerun_decodes_nothing_and_writes_the_same(cohort, tmp_path, decodes):
    results = tmp_path / "results"
    first = run_ingest(_config(results, cohort))
    decoded = decodes()
    assert len(decoded) > 10
    kinds = {what for what, _ in decoded}
    assert {"assemble_series", "read_image", "read_nifti"} <= kinds
    before = _outputs(results)
    cache = json.loads((results / "ingest" / CACHE).read_text())
    text = json.dumps(cache)
    for planted in (PATIENT_ID, "GOOD0001", "HOST0", str(cohort)):
        assert planted not in text  # keyed hashes and pseudonyms only

    again = run_ingest(_config(results, cohort))
    assert again == first
    assert decodes() == decoded, "the re-run decoded something"
    after = _outputs(results)
    # Same bytes everywhere; the NIfTI and sidecars are not even rewritten (same mtimes).
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    images = [k for k in before if k.endswith((".nii.gz", ".json"))]
    assert images and all(after[k][1] == before[k][1] for k in images)


def test_touching_one_file_reconverts_exactly_its_series(cohort, tmp_path, decodes):
    results = tmp_path / "results"
    run_ingest(_config(results, cohort))
    n_first = len(decodes())
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    touched = sorted((cohort / "more" / "ct3").iterdir())[2]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

    run_ingest(_config(results, cohort))
    again = decodes()[n_first:]
    assert again == [("assemble_series", "ct3")]  # the touched file's series, once
    assert read_manifest(results / "ingest" / "manifest.tsv").equals(manifest)

    # A file removed from a series re-converts that series (now 3 slices) and nothing else.
    n_second = len(decodes())
    touched.unlink()
    run_ingest(_config(results, cohort))
    assert decodes()[n_second:] == [("assemble_series", "ct3")]
    shapes = read_manifest(results / "ingest" / "manifest.tsv")["shape"]
    assert "6x8x3" in set(shapes) and "6x8x4" in set(shapes)

    # A new series converts itself only.
    n_third = len(decodes())
    ct_series(cohort / "more" / "ct4", "GOOD0006", seed=10)
    run_ingest(_config(results, cohort))
    assert decodes()[n_third:] == [("assemble_series", "ct4")]


def test_a_settings_change_converts_everything_again(cohort, tmp_path, decodes):
    results = tmp_path / "results"
    run_ingest(_config(results, cohort))
    n_first = len(decodes())
    run_ingest(_config(results, cohort, dates="shift"))
    assert len(decodes()) - n_first == n_first
    # Changing only the number of workers changes nothing that is written: all restored.
    run_ingest(_config(results, cohort, workers=1, dates="shift"))
    assert len(decodes()) == 2 * n_first


def test_workers_write_what_one_process_writes(cohort, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_ingest(_config(one, cohort, workers=1))
    run_ingest(_config(two, cohort, workers=3))
    for table in ("manifest.tsv", "files.tsv", "quarantine.tsv", "batches.tsv"):
        a = (one / "ingest" / table).read_text()
        b = (two / "ingest" / table).read_text()
        assert a == b, table
    assert {k: v[0] for k, v in _outputs(one).items()} == {
        k: v[0] for k, v in _outputs(two).items()
    }


def test_a_worker_that_dies_quarantines_only_its_series(cohort, tmp_path, monkeypatch):
    original = passes.convert_volumes

    def crashing(members, ctx, role="image"):
        if members[0].patient_id == "GOOD0005":
            os._exit(9)  # as a codec crashing the interpreter would
        return original(members, ctx, role=role)

    monkeypatch.setattr(passes, "convert_volumes", crashing)
    results = tmp_path / "results"
    run_ingest(_config(results, cohort))
    files = read_files(results / "ingest" / "files.tsv")
    died = files[files["file"].str.contains("/more/ct3/")]
    assert len(died) == 4 and set(died["fate"]) == {"quarantined"}
    assert set(died["detail"]) == {"its ingest worker process died (a crash in a decoder)"}
    good = files[files["file"].str.contains("/good/")]
    assert set(good["fate"]) == {"converted"}


@pytest.fixture
def headers(tmp_path, monkeypatch):
    """A function returning the folders of the files whose headers were read so far."""
    log = tmp_path / "headers.log"
    log.touch()
    original = passes.read_entry

    def counting(cand, *args):
        with open(log, "a") as fh:
            fh.write(f"{cand.path.parent.name}\n")
        return original(cand, *args)

    monkeypatch.setattr(passes, "read_entry", counting)
    return lambda: log.read_text().splitlines()


def test_rerun_reads_no_header_of_an_unchanged_series(cohort, tmp_path, headers, decodes):
    results = tmp_path / "results"
    run_ingest(_config(results, cohort))
    first = headers()
    manifest = (results / "ingest" / "manifest.tsv").read_text()
    files = (results / "ingest" / "files.tsv").read_text()
    run_ingest(_config(results, cohort))
    again = headers()[len(first) :]
    # Only files of no converted series are read again (the quarantined ones, one-file
    # series of hostile files); none of the good series.
    assert again and not {"ct1", "ct2", "ct3", "dx"} & set(again)
    assert (results / "ingest" / "manifest.tsv").read_text() == manifest
    assert (results / "ingest" / "files.tsv").read_text() == files

    # A slice added to ct3 (same series, next position): ct3 is read and converted whole.
    n_read, n_decoded = len(headers()), len(decodes())
    slices = sorted((cohort / "more" / "ct3").iterdir())
    ds = pydicom.dcmread(slices[-1])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImagePositionPatient = [
        float(v) + 2.0 * (i == 2) for i, v in enumerate(ds.ImagePositionPatient)
    ]
    ds.InstanceNumber = int(ds.InstanceNumber) + 1
    ds.save_as(cohort / "more" / "ct3" / "IM9999.dcm")
    run_ingest(_config(results, cohort))
    assert headers()[n_read:].count("ct3") == 5 + 1  # the new file, then the series whole
    assert decodes()[n_decoded:] == [("assemble_series", "ct3")]
    shapes = read_manifest(results / "ingest" / "manifest.tsv")["shape"]
    assert "6x8x5" in set(shapes)


@pytest.mark.parametrize(
    ("setting", "threads", "default", "expected"),
    [(0, None, 2, 2), (0, 4, 2, 4), (3, 4, 2, 3), (0, 0, 1, 1), (1, 8, 2, 1)],
)
def test_workers_default_to_the_jobs_threads(setting, threads, default, expected):
    assert resolve_workers(setting, threads, default) == expected
