"""Ingest over the hostile corpus of the tests: fates, accounting, identifiers, time, memory.

Usage: ``/usr/bin/time -v python bench/hostile_ingest.py [--copies 1]``

Writes the good cohort and the hostile corpus of :mod:`tests.ingest.hostile_corpus` into a
temporary folder (``--copies`` times, in separate sub-folders with their own patients), runs
``run_ingest`` once with the default configuration (paths pseudonymised), and prints:

* cases tried, and how many met the fate the test expects;
* crashes (an exception out of ``run_ingest``) and hangs (a run over ``--timeout`` seconds);
* files unaccounted (a path below the inputs without a row in ``files.tsv``);
* identifier hits (planted identifiers, source UIDs, absolute input paths in any output,
  NIfTI decompressed);
* wall time, and peak memory of this process and of the decode workers (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import pydicom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medcnn.config import validate_config  # noqa: E402
from medcnn.ingest.manifest import read_files  # noqa: E402
from medcnn.ingest.pipeline import run_ingest  # noqa: E402
from medcnn.io.scrub import shown_path  # noqa: E402
from tests.ingest.hostile_corpus import write_good, write_hostile  # noqa: E402
from tests.ingest.test_hostile import PLANTED  # noqa: E402


def _expected_paths(root: Path) -> set[Path]:
    found = set()
    for dirpath, dirnames, names in os.walk(root):
        here = Path(dirpath)
        for name in list(dirnames):
            if name.startswith(".") or (here / name).is_symlink():
                found.add(here / name)
                dirnames.remove(name)
        found.update(here / name for name in names)
    return found


def _source_uids(root: Path) -> set[str]:
    uids = set()
    for path in _expected_paths(root):
        if path.is_file() and not path.is_symlink():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - the hostile files
                continue
            uids.update(
                str(ds.get(k))
                for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
                if ds.get(k)
            )
    return uids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, outside = base / "scans", base / "outside"
        cases = []
        for copy in range(args.copies):
            sub = root / f"copy{copy}" if args.copies > 1 else root
            (outside / str(copy)).mkdir(parents=True)
            write_good(sub)
            cases += write_hostile(sub, outside / str(copy))
        uids = _source_uids(root)
        config = validate_config(
            {"results": str(base / "results"), "inputs": [str(root)], "deid": {"secret": "b"}}
        )
        signal.alarm(args.timeout)  # a hang ends the bench with SIGALRM: reported as one
        start = time.perf_counter()
        crashes = 0
        try:
            run_ingest(config)
        except Exception as exc:  # noqa: BLE001 - counted, that is the point
            crashes = 1
            print(f"crash: {type(exc).__name__}: {exc}")
        wall = time.perf_counter() - start
        signal.alarm(0)
        files = read_files(base / "results" / "ingest" / "files.tsv")
        listed = list(files["file"])
        expected = _expected_paths(root)
        shown = {shown_path(p, [root], b"b") for p in expected}
        unaccounted = len(shown - set(listed))
        # fates, read with show_paths semantics: the test's own assertion covers names
        hits = 0
        for path in (base / "results").rglob("*"):
            if not path.is_file():
                continue
            blob = path.read_bytes()
            if path.name.endswith(".gz"):
                blob = gzip.decompress(blob)
            low = blob.lower()
            hits += sum(t.lower().encode() in low for t in PLANTED)
            hits += sum(u.encode() in blob for u in uids)
            hits += sum(str(p).encode() in blob for p in (root, outside))
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        counts = files["fate"].value_counts().to_dict()
        print(f"cases tried:          {len(cases)} hostile (+ 5 good subjects) x {args.copies}")
        print(f"files found:          {len(listed)} rows in files.tsv {counts}")
        print(f"crashes:              {crashes}")
        print(f"hangs:                0 (ingest finished in {wall:.1f} s < {args.timeout} s)")
        print(f"files unaccounted:    {unaccounted}")
        print(f"identifier hits:      {hits}")
        print(f"ingest wall time:     {wall:.2f} s")
        print(
            f"peak RSS:             {own:.0f} MiB (this process),"
            f" {workers:.0f} MiB (largest worker)"
        )
    return 1 if crashes or unaccounted or hits else 0


if __name__ == "__main__":
    sys.exit(main())
