"""medcnn ingest against ``dcm2niix -z y`` on the same folders, in one run.

Usage::

    python bench/ingest_vs_dcm2niix.py [--workers 2] [--repeat 2] [--ct-series 10]
        [--ct-slices 300] [--suites dcm_qa_nih,dcm_qa_philips,...] [--no-ct]

Rows: each dev suite in ``../shared/data/dicom_qa/*/In`` (skipped when absent) and a
generated CT cohort (``--ct-series`` x ``--ct-slices`` slices of 512 x 512 int16, a phantom
with air, soft tissue, bone and noise, written here with pydicom, seed 0).

For each row, dcm2niix and medcnn run alternately (``--repeat`` times each, interleaved, so
that load from other work on the machine hits both alike) into fresh output folders, each in
its own process; the table gives the best wall time of each, files/s, the CPU time of the
process tree (user + system, all children included), the peak memory of the process tree
(MB: the sum of PSS over the process and all its children, sampled every 20 ms, and never
below the largest process's ``ru_maxrss``) and the ratios medcnn / dcm2niix. ``medcnn`` is
``medcnn ingest`` as a user runs it (interpreter start and imports included); ``medcnn
work`` is the same run without the start (``run_ingest`` alone, as the child reports it);
``re-run`` is medcnn again over the unchanged folder with its outputs in place (nothing is
decoded); ``start s`` is medcnn's wall time less its work (interpreter, imports, config).

First, the fixed costs (``--floor-repeat`` runs each, the best): the interpreter alone
(``python -c pass``), the imports of the ingest path as ``medcnn ingest`` makes them
(``medcnn.config``, pydicom with its codec libraries deferred, ``medcnn.ingest.pipeline``),
and ``dcm2niix -v``, so a reader sees what every row pays before
any file is read. The load average of the machine is printed with every row (the benchmark
shares the machine with whatever else runs). Then a table of the compression options for
NIfTI output on the first CT volume: ratio and MB/s of zlib (levels 1 and 6, nibabel's
default) and python-isal's igzip.
"""

from __future__ import annotations

import argparse
import compileall
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
QA = REPO.parent / "shared" / "data" / "dicom_qa"
SUITES = ("dcm_qa_nih", "dcm_qa_philips", "dcm_qa_ts", "dcm_qa_enh")


# --- the generated CT cohort ---------------------------------------------------------------


def ct_phantom(size: int, n_slices: int, rng: np.random.Generator) -> np.ndarray:
    """``(slices, rows, columns)`` stored values of a body phantom (HU + 1024, int16).

    Air outside an elliptic body, soft tissue (40 HU) with a few denser organs, a spine
    (bone, 700 HU) and Gaussian noise (sd 12 HU) inside the body only, as in a real CT whose
    air is mostly flat and so compresses much as a real one does.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    body = (x / 0.42) ** 2 + (y / 0.32) ** 2 <= 1
    spine = ((x) / 0.05) ** 2 + ((y - 0.18) / 0.05) ** 2 <= 1
    liver = ((x + 0.15) / 0.14) ** 2 + ((y + 0.02) / 0.1) ** 2 <= 1
    volume = np.empty((n_slices, size, size), dtype=np.int16)
    for k in range(n_slices):
        hu = np.full((size, size), -1000.0, dtype=np.float32)
        hu[body] = 40.0
        hu[liver] = 60.0 + 10 * np.sin(k / 17)
        hu[spine] = 700.0
        hu[body] += rng.normal(0, 12, int(body.sum())).astype(np.float32)
        volume[k] = np.clip(np.rint(hu + 1024), 0, 4095).astype(np.int16)
    return volume


def write_ct_cohort(folder: Path, n_series: int, n_slices: int, size: int = 512) -> int:
    """``n_series`` axial CT series (one patient each) of ``n_slices`` files; the file count."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    count = 0
    for s in range(n_series):
        volume = ct_phantom(size, n_slices, rng)
        study, series = generate_uid(), generate_uid()
        frame_of_reference = generate_uid()
        out = folder / f"patient{s:02d}" / "CT"
        out.mkdir(parents=True, exist_ok=True)
        for k in range(n_slices):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
            ds.Modality = "CT"
            ds.PatientID = f"BENCH{s:04d}"
            ds.PatientName = f"BENCH^{s:04d}"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.FrameOfReferenceUID = frame_of_reference
            ds.StudyDate = "20200101"
            ds.SeriesNumber, ds.InstanceNumber = s + 1, k + 1
            ds.SeriesDescription = "abdomen 1.0"
            ds.Manufacturer = "bench"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-200.0, -200.0, -k * 1.0]
            ds.PixelSpacing = [0.78125, 0.78125]
            ds.SliceThickness = 1.0
            ds.KVP = 120
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
            ds.Rows = ds.Columns = size
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
            ds.PixelRepresentation = 1
            ds.PixelData = volume[k].tobytes()
            ds.save_as(out / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
            count += 1
    return count


# --- measuring a process tree --------------------------------------------------------------


def _tree_memory(pid: int) -> int:
    """Proportional set size (PSS) in bytes of ``pid`` and all its descendants (Linux).

    PSS splits each shared page between the processes that map it, so forked workers
    (which share the parent's interpreter and modules until they write to them) are not
    counted twice, as a sum of resident sizes would; VmRSS where PSS cannot be read.
    """
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            total += _memory_of(current)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total


def _memory_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) << 10
    except OSError:
        pass
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) << 10
    return 0


def measured(command: list[str], check: bool = True) -> tuple[float, int, str, float]:
    """(wall seconds, peak memory of the tree, stdout, CPU seconds of the tree).

    The peak is the largest sum of PSS over the tree seen every 20 ms, and never below the
    largest single process's ``ru_maxrss`` (which catches a peak between two samples).
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu = usage.ru_maxrss << 10, usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_memory(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = process.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if process.returncode and check:
        raise RuntimeError(f"{command[:3]} failed with exit status {process.returncode}")
    # ru_maxrss is the largest single child so far: a floor for the tree's peak. CPU time
    # counts every process of the tree that was waited for (workers and decoders are).
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    largest = usage.ru_maxrss << 10
    cpu = usage.ru_utime + usage.ru_stime - cpu
    return wall, max(peak[0], largest if largest > before else 0), stdout, cpu


def dcm2niix_command(folder: Path, out: Path) -> list[str]:
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    return [exe, "-z", "y", "-b", "y", "-f", "%p_%s", "-o", str(out), str(folder)]


#: The checkout whose medcnn is measured (``--repo``: another one, e.g. the main branch).
CODE = [REPO]


def medcnn_command(folder: Path, results: Path, workers: int) -> list[str]:
    child_args = [str(folder), str(results), str(workers), str(CODE[0])]
    return [sys.executable, __file__, "--child", *child_args]


def child(folder: str, results: str, workers: str, repo: str) -> None:
    """Run ingest once (the ``--child`` mode) and print its own wall time as JSON."""
    import logging

    sys.path.insert(0, repo)
    try:  # as `medcnn ingest` starts (a checkout from before medcnn.io.codecs: as it did)
        from medcnn.io.codecs import import_pydicom

        import_pydicom(defer_codecs=True)
    except ImportError:
        pass
    from medcnn.config import load_schema, validate_config
    from medcnn.ingest.pipeline import run_ingest

    logging.disable(logging.WARNING)
    ingest = {}
    if "workers" in load_schema()["properties"]["ingest"]["properties"]:
        ingest["workers"] = int(workers)  # a checkout from before ingest.workers: one process
    config = validate_config(
        {
            "results": results,
            "inputs": [folder],
            "deid": {"secret": "bench"},
            "ingest": ingest,
            "tasks": {"t": {"kind": "classification", "target": {"column": "f", "positive": "p"}}},
        }
    )
    start = time.perf_counter()
    images, quarantined = run_ingest(config)
    print(json.dumps({"work": time.perf_counter() - start, "images": images, "q": quarantined}))


def floor_rows(repeat: int) -> list[tuple[str, float, float]]:
    """(what, best wall s, best CPU s) of the fixed costs: interpreter, imports, dcm2niix."""
    code = str(CODE[0])
    imports = (
        f"import sys; sys.path.insert(0, {code!r}); import medcnn.config\n"
        "try: from medcnn.io.codecs import import_pydicom; import_pydicom(defer_codecs=True)\n"
        "except ImportError: pass\n"
        "import medcnn.ingest.pipeline"
    )
    commands = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python: import the ingest path", [sys.executable, "-c", imports]),
        ("dcm2niix -v (exit status 3)", [dcm2niix_command(Path("."), Path("."))[0], "-v"]),
    ]
    rows = []
    for what, command in commands:
        best = (float("inf"), float("inf"))
        for _ in range(repeat):
            wall, _, _, cpu = measured(command, check=False)
            best = (min(best[0], wall), min(best[1], cpu))
        rows.append((what, *best))
    return rows


def load() -> str:
    """The load average (1, 5, 15 minutes) now."""
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def bench_row(name: str, folder: Path, tmp: Path, workers: int, repeat: int) -> dict:
    """Interleaved runs of dcm2niix and medcnn on one folder; the best of each.

    Each entry: (wall s, peak bytes, wall s of the work alone, CPU s of the tree).
    """
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    best: dict[str, tuple[float, int, float, float]] = {}

    def keep(what: str, result: tuple[float, int, float, float]) -> None:
        if what not in best or result[0] < best[what][0]:
            best[what] = result

    for attempt in range(repeat):
        out = tmp / f"d2n-{name}-{attempt}"
        out.mkdir()
        wall, peak, _, cpu = measured(dcm2niix_command(folder, out))
        shutil.rmtree(out)
        keep("dcm2niix", (wall, peak, wall, cpu))
        results = tmp / f"medcnn-{name}-{attempt}"
        for what in ("medcnn", "re-run"):
            wall, peak, stdout, cpu = measured(medcnn_command(folder, results, workers))
            work = json.loads(stdout.strip().splitlines()[-1])["work"]
            keep(what, (wall, peak, work, cpu))
        shutil.rmtree(results)
    return {"name": name, "files": files, "load": load(), **best}


# --- compression options --------------------------------------------------------------------


def compression_table(volume: np.ndarray) -> list[tuple[str, float, float]]:
    """(option, ratio, MB/s of input) for NIfTI-sized bytes of ``volume``."""
    raw = np.asfortranarray(volume).tobytes(order="F")
    options = [
        ("zlib level 6 (nibabel)", lambda b: gzip.compress(b, 6, mtime=0)),
        ("zlib level 1", lambda b: gzip.compress(b, 1, mtime=0)),
    ]
    try:
        from isal import igzip

        for level in (0, 1, 2, 3):
            options.append((f"isal igzip level {level}", lambda b, lv=level: igzip.compress(b, lv)))
    except ImportError:
        print("(python-isal not installed: its rows are left out)")
    rows = []
    for option, func in options:
        start = time.perf_counter()
        packed = func(raw)
        seconds = time.perf_counter() - start
        assert zlib.crc32(gzip.decompress(packed)) == zlib.crc32(raw)
        rows.append((option, len(raw) / len(packed), len(raw) / 1e6 / seconds))
    return rows


def print_rows(rows: list[dict], workers: int) -> None:
    header = (
        f"{'data':<15} {'files':>5} | {'dcm2niix s':>10} {'f/s':>5} {'cpu':>5} {'MB':>4}"
        f" | {'medcnn s':>8} {'f/s':>5} {'cpu':>5} {'MB':>4} {'ratio':>5} {'cpu':>5}"
        f" | {'work s':>6} {'ratio':>5} {'start s':>7} | {'re-run s':>8} {'cpu':>4} {'MB':>4}"
        f" | {'load':>14}"
    )
    print(f"\nmedcnn ingest ({workers} workers) vs dcm2niix -z y; best of the interleaved runs")
    print(header)
    print("-" * len(header))
    for r in rows:
        d, m, again = r["dcm2niix"], r["medcnn"], r["re-run"]
        n = r["files"]
        print(
            f"{r['name']:<15} {n:>5} | {d[0]:>10.2f} {n / d[0]:>5.0f} {d[3]:>5.1f}"
            f" {d[1] / 2**20:>4.0f} | {m[0]:>8.2f} {n / m[0]:>5.0f} {m[3]:>5.1f}"
            f" {m[1] / 2**20:>4.0f} {m[0] / d[0]:>5.2f} {m[3] / d[3]:>5.2f}"
            f" | {m[2]:>6.2f} {m[2] / d[0]:>5.2f} {m[0] - m[2]:>7.2f}"
            f" | {again[0]:>8.2f} {again[3]:>4.1f} {again[1] / 2**20:>4.0f} | {r['load']:>14}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("--ct-series", type=int, default=10)
    parser.add_argument("--ct-slices", type=int, default=300)
    parser.add_argument("--no-ct", action="store_true")
    parser.add_argument("--floor-repeat", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to measure")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    CODE[0] = args.repo.resolve()
    print(f"medcnn from {CODE[0]}; load average at the start {load()}")
    # Bytecode first, as a user's second run finds it (an editable install writes it on the
    # first run; PYTHONDONTWRITEBYTECODE, set on some machines, would else make every run
    # compile medcnn's modules again: ~0.1 s of each start).
    compileall.compile_dir(str(CODE[0] / "medcnn"), quiet=1)
    print(f"\nfixed costs, best of {args.floor_repeat} (load average {load()})")
    print(f"{'what':<32} {'wall s':>7} {'cpu s':>6}")
    for what, wall, cpu in floor_rows(args.floor_repeat):
        print(f"{what:<32} {wall:>7.3f} {cpu:>6.3f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for suite in args.suites.split(","):
            folder = QA / suite / "In"
            if not folder.is_dir():
                print(f"({suite} skipped: {folder} not found)")
                continue
            rows.append(bench_row(suite, folder, tmp, args.workers, args.repeat))
            print_rows(rows[-1:], args.workers)
        if not args.no_ct:
            cohort = tmp / "ct"
            start = time.perf_counter()
            n = write_ct_cohort(cohort, args.ct_series, args.ct_slices)
            print(f"(CT cohort: {n} files written in {time.perf_counter() - start:.0f} s)")
            name = f"CT {args.ct_series}x{args.ct_slices}"
            rows.append(bench_row(name, cohort, tmp, args.workers, args.repeat))
            print_rows(rows[-1:], args.workers)
            volume = ct_phantom(512, min(args.ct_slices, 100), np.random.default_rng(0))
            print(f"\nNIfTI compression of a 512x512x{volume.shape[0]} int16 CT volume")
            print(f"{'option':<24} {'ratio':>6} {'MB/s':>7}")
            for option, ratio, speed in compression_table(volume):
                print(f"{option:<24} {ratio:>6.2f} {speed:>7.0f}")
    print_rows(rows, args.workers)
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
