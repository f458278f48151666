"""The dcm2niix reference check: medcnn ingest against dcm2niix's ``Ref/`` of each QA suite.

Usage: ``python bench/dicom_reference.py [--data ../shared/data/dicom_qa] [--suite NAME]...
[--ingest KEY=VALUE]...``

Each suite (``dcm_qa_nih``, ``dcm_qa_philips``, ``dcm_qa_ts``, ``dcm_qa_enh``) is converted the
way a user would: ``run_ingest`` with a config whose only input is the suite's ``In/`` folder
(default settings, so dcm2niix's behaviour is what the defaults must give). Then every entry
of ``Ref/`` (the files dcm2niix wrote with the flags of the suite's ``batch.sh``, grouped by
name stem) is one row:

* a reference NIfTI must be matched by one output with the same shape, the same voxels
  (integers exactly, floats within 1e-4 of the reference's largest magnitude) and the same
  world geometry, all after ``nibabel.as_closest_canonical``, the affine within 1e-3 mm;
  its ``.bval``/``.bvec``, when present, are compared too (below);
* a reference with only ``.json`` (and ``.bval``/``.bvec``) is matched by its sidecar
  (SeriesNumber, EchoNumber, the phase / field-map ImageType) and compared on the volume
  count, the b-values (exact to 0.5 s/mm2), the b-vectors (same direction up to sign, in
  world space, within 1e-3: each file's vectors are turned into world space with its own
  voxel axes; dcm2niix's are our axes with the row order flipped, its layout) and key
  sidecar fields (EchoTime, RepetitionTime, FlipAngle, PhaseEncodingAxis/Direction,
  EchoNumber, SliceTiming within 1e-4 s and ImageType);
* a reference whose series is not in ``In/`` at all (no input file has its SeriesNumber and
  Manufacturer: some suites keep references of series they do not ship) is listed as
  ``no input`` and not counted.

The match rate per suite is the share of counted rows that match in every respect.
Exit status 0 when every suite is at 100%, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pydicom as `medcnn ingest` imports it: the codec libraries loaded only for compressed files.
from medcnn.io.codecs import import_pydicom  # noqa: E402

import_pydicom(defer_codecs=True)
import pydicom  # noqa: E402

from medcnn.config import validate_config  # noqa: E402
from medcnn.ingest.manifest import read_manifest  # noqa: E402
from medcnn.ingest.pipeline import run_ingest  # noqa: E402

SUITES = ("dcm_qa_nih", "dcm_qa_philips", "dcm_qa_ts", "dcm_qa_enh")
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dicom_qa"
#: Sidecar fields compared (numbers within 1e-4 relative, text exactly).
KEY_FIELDS = (
    "EchoTime",
    "RepetitionTime",
    "FlipAngle",
    "EchoNumber",
    "PhaseEncodingAxis",
    "PhaseEncodingDirection",
    "SliceTiming",
    "ImageType",
)


@dataclass
class Output:
    """One converted image of ours."""

    path: Path
    sidecar: dict[str, Any]
    canonical: Any = None  # nibabel image after as_closest_canonical
    affine: np.ndarray | None = None  # as written
    bval: np.ndarray | None = None
    bvec: np.ndarray | None = None


@dataclass
class Row:
    suite: str
    reference: str
    kind: str  # "nifti", "sidecar" or "no input"
    shape: bool | None = None
    voxels: bool | None = None
    geometry: bool | None = None
    diffusion: bool | None = None
    sidecar: bool | None = None
    fields: bool | None = None  # a reference NIfTI's sidecar fields: shown, not counted
    detail: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def counted(self) -> bool:
        return self.kind != "no input"

    @property
    def ok(self) -> bool:
        checks = (self.shape, self.voxels, self.geometry, self.diffusion, self.sidecar)
        return all(c is not False for c in checks) and any(c is not None for c in checks)


def _load_table(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=float) if rows else np.zeros((0,))


def convert_suite(suite_dir: Path, results: Path, ingest: dict[str, Any] | None = None) -> list:
    """Run medcnn ingest on ``suite_dir/In`` into ``results``; the outputs."""
    config = validate_config(
        {
            "results": str(results),
            "inputs": [str(suite_dir / "In")],
            "deid": {"secret": "dicom-reference-check"},
            "ingest": dict(ingest or {}),
            "tasks": {"t": {"kind": "classification", "target": {"column": "f", "positive": "p"}}},
        }
    )
    run_ingest(config)
    manifest = read_manifest(results / "ingest" / "manifest.tsv")
    outputs = []
    for _, row in manifest.iterrows():
        path = results / row["path"]
        stem = path.name[: -len(".nii.gz")]
        sidecar = json.loads((results / row["sidecar"]).read_text())
        img = nib.load(path)
        outputs.append(
            Output(
                path=path,
                sidecar=sidecar,
                canonical=nib.as_closest_canonical(img),
                affine=np.asarray(img.affine),
                bval=_load_table(path.with_name(stem + ".bval")),
                bvec=_load_table(path.with_name(stem + ".bvec")),
            )
        )
    return outputs


def _input_series(in_dir: Path) -> set[tuple[int, str]]:
    """(SeriesNumber, first word of Manufacturer) of every DICOM file below ``in_dir``."""
    found = set()
    for path in in_dir.rglob("*"):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=["SeriesNumber", "Manufacturer"]
            )
        except Exception:  # noqa: BLE001 - notes.txt and the like
            continue
        if "SeriesNumber" in ds:
            found.add((int(ds.SeriesNumber), _maker(str(ds.get("Manufacturer", "")))))
    return found


def _maker(text: str) -> str:
    return text.split()[0].lower() if text.split() else ""


def _voxels_equal(ours: np.ndarray, ref: np.ndarray) -> bool:
    """Integers exactly; floats within 1e-4 of the reference's largest magnitude (relative
    to the image, not per voxel: dcm2niix's own slope is float32 arithmetic, e.g.
    0.24420166 for a RescaleSlope of 0.24420024, which moves a value near 0 by 1e-5 of the
    range)."""
    if ours.shape != ref.shape:
        return False
    if np.issubdtype(ours.dtype, np.integer) and np.issubdtype(ref.dtype, np.integer):
        return bool(np.array_equal(ours, ref))
    a, b = ours.astype(np.float64), ref.astype(np.float64)
    scale = max(float(np.abs(b).max()), 1e-12)
    return bool(np.all(np.abs(a - b) <= 1e-4 * scale))


def _world_vectors(bvec: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL-style bvecs (image space, x flipped when the affine's determinant is positive)
    as unit world (RAS) vectors, one row per volume."""
    rot = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    vox = np.asarray(bvec, dtype=float).reshape(3, -1).copy()
    if np.linalg.det(rot) > 0:
        vox[0] *= -1
    world = (rot @ vox).T
    norms = np.linalg.norm(world, axis=1, keepdims=True)
    return np.where(norms > 1e-6, world / np.where(norms > 1e-6, norms, 1), 0.0)


def _dcm2niix_affine(ours: np.ndarray) -> np.ndarray:
    """dcm2niix's voxel axes for a volume we wrote: ours with the row order flipped."""
    flipped = ours.copy()
    flipped[:3, 1] *= -1
    return flipped


def compare_diffusion(
    out: Output, bval: np.ndarray | None, bvec: np.ndarray | None, ref_affine: np.ndarray
) -> tuple[bool | None, str]:
    if bval is None and bvec is None:
        return None, ""
    if out.bval is None or out.bvec is None:
        return False, "no bval/bvec written"
    ref_b = np.ravel(bval)
    our_b = np.ravel(out.bval)
    if ref_b.shape != our_b.shape:
        return False, f"{our_b.size} b-values, reference {ref_b.size}"
    if np.abs(ref_b - our_b).max() > 0.5:
        return False, f"b-values differ (max {np.abs(ref_b - our_b).max():g})"
    ours = _world_vectors(out.bvec, out.affine)
    theirs = _world_vectors(bvec, ref_affine)
    weighted = ref_b > 0
    dots = np.abs(np.sum(ours * theirs, axis=1))[weighted]
    if dots.size and float(dots.min()) < 1 - 1e-3:
        worst = int(np.argmin(dots))
        return False, f"b-vectors differ (|cos| {dots.min():.4f} at weighted volume {worst})"
    return True, ""


def compare_fields(ours: dict[str, Any], ref: dict[str, Any]) -> tuple[bool, list[str]]:
    problems = []
    for key in KEY_FIELDS:
        if key not in ref:
            continue
        mine, theirs = ours.get(key), ref[key]
        if key == "PhaseEncodingDirection" and isinstance(theirs, str) and theirs[:1] == "j":
            # dcm2niix writes the rows flipped (its j runs the other way): its "j-" is our "j".
            theirs = "j" if theirs.endswith("-") else "j-"
        if key == "ImageType" and isinstance(theirs, list) and theirs[-1:] == ["MAGNITUDE"]:
            # Appended by newer dcm2niix versions only (the v1.0.20211006 references of the
            # same Siemens images lack it): not compared.
            theirs = theirs[:-1]
        if mine is None:
            problems.append(f"{key} missing")
            continue
        if isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
            ok = isinstance(mine, (int, float)) and abs(mine - theirs) <= 1e-4 * max(
                1.0, abs(theirs)
            )
        elif isinstance(theirs, list) and theirs and isinstance(theirs[0], (int, float)):
            # Slice times: within Siemens' 2.5 ms tick (dcm2niix takes them from a volume
            # of its choosing; the volumes of one series differ by a tick).
            tolerance = 0.0025 + 1e-6 if key == "SliceTiming" else 1e-4
            ok = (
                isinstance(mine, list)
                and len(mine) == len(theirs)
                and np.allclose(mine, theirs, atol=tolerance)
            )
        else:
            ok = mine == theirs
        if not ok:
            problems.append(f"{key} {mine!r} != {theirs!r}")
    return not problems, problems


def _same_series(out: Output, ref_json: dict[str, Any]) -> bool:
    sc = out.sidecar
    if sc.get("SeriesNumber") != ref_json.get("SeriesNumber"):
        return False
    if _maker(str(sc.get("Manufacturer", ""))) != _maker(str(ref_json.get("Manufacturer", ""))):
        return False
    if "EchoNumber" in ref_json and sc.get("EchoNumber", 1) != ref_json["EchoNumber"]:
        return False
    phase = {"P", "PHASE", "FIELDMAPHZ"}
    ref_phase = bool(phase & {str(v).upper() for v in ref_json.get("ImageType", [])})
    our_phase = bool(phase & {str(v).upper() for v in sc.get("ImageType", [])})
    return ref_phase == our_phase


def check_suite(suite_dir: Path, outputs: list[Output]) -> list[Row]:
    """One row per reference entry of ``suite_dir/Ref``."""
    suite = suite_dir.name
    ref_dir = suite_dir / "Ref"
    stems = sorted({p.name.split(".")[0] for p in ref_dir.iterdir() if not p.name.startswith(".")})
    present = _input_series(suite_dir / "In")
    rows = []
    for stem in stems:
        ref_json = json.loads((ref_dir / f"{stem}.json").read_text())
        bval = _load_table(ref_dir / f"{stem}.bval")
        bvec = _load_table(ref_dir / f"{stem}.bvec")
        nii = ref_dir / f"{stem}.nii"
        key = (int(ref_json.get("SeriesNumber", -1)), _maker(str(ref_json.get("Manufacturer", ""))))
        if key not in present:
            rows.append(Row(suite, stem, "no input", detail=["series not in In/"]))
            continue
        if nii.is_file():
            rows.append(_check_nifti(suite, stem, nii, ref_json, bval, bvec, outputs))
        else:
            rows.append(_check_sidecar(suite, stem, ref_json, bval, bvec, outputs))
    return rows


def _check_nifti(suite, stem, nii, ref_json, bval, bvec, outputs) -> Row:
    row = Row(suite, stem, "nifti")
    ref_img = nib.load(nii)
    ref = nib.as_closest_canonical(ref_img)
    expected = np.asarray(ref.dataobj)
    same_shape = [o for o in outputs if o.canonical.shape == ref.shape]
    row.shape = bool(same_shape)
    if not same_shape:
        shapes = sorted({str(o.canonical.shape) for o in outputs if _same_series(o, ref_json)})
        row.detail.append(f"no output of shape {ref.shape} (same series: {', '.join(shapes)})")
        row.voxels = row.geometry = False
        return row
    same_voxels = [
        o for o in same_shape if _voxels_equal(np.asarray(o.canonical.dataobj), expected)
    ]
    row.voxels = bool(same_voxels)
    pool = same_voxels or same_shape
    gaps = [float(np.abs(o.canonical.affine - ref.affine).max()) for o in pool]
    best = pool[int(np.argmin(gaps))]
    row.geometry = min(gaps) < 1e-3
    if not row.voxels:
        diffs = []
        for o in same_shape:
            got = np.asarray(o.canonical.dataobj, dtype=np.float64)
            diffs.append(float(np.abs(got - expected).max()))
        row.detail.append(f"voxels differ (closest output: max |diff| {min(diffs):.4g})")
    if not row.geometry:
        row.detail.append(f"affine off by {min(gaps):.4g} mm")
    if bval is not None or bvec is not None:
        row.diffusion, why = compare_diffusion(best, bval, bvec, _dcm2niix_affine(best.affine))
        if why:
            row.detail.append(why)
    row.fields, problems = compare_fields(best.sidecar, ref_json)
    row.notes.extend(problems)
    return row


def _check_sidecar(suite, stem, ref_json, bval, bvec, outputs) -> Row:
    row = Row(suite, stem, "sidecar")
    candidates = [o for o in outputs if _same_series(o, ref_json)]
    if not candidates:
        row.sidecar = False
        row.detail.append("no output of this series")
        return row
    if bval is not None:
        n = np.ravel(bval).size
        sized = [o for o in candidates if (o.canonical.shape + (1,))[3] == n]
        row.shape = bool(sized)
        if not sized:
            shapes = ", ".join(str(o.canonical.shape) for o in candidates)
            row.detail.append(f"{n} volumes expected, outputs {shapes}")
        candidates = sized or candidates
    best = candidates[0]
    if bval is not None or bvec is not None:
        row.diffusion, why = compare_diffusion(best, bval, bvec, _dcm2niix_affine(best.affine))
        if why:
            row.detail.append(why)
    row.sidecar, problems = compare_fields(best.sidecar, ref_json)
    row.detail.extend(problems)
    return row


def run(data: Path, suites: list[str], ingest: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for suite in suites:
        suite_dir = data / suite
        if not (suite_dir / "In").is_dir():
            print(f"{suite}: not found below {data}, skipped", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix=f"ref-{suite}-") as tmp:
            outputs = convert_suite(suite_dir, Path(tmp), ingest)
            rows.extend(check_suite(suite_dir, outputs))
    return rows


def _mark(value: bool | None) -> str:
    return "-" if value is None else ("ok" if value else "FAIL")


def rates(rows: list[Row]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for row in rows:
        if row.counted:
            good, total = out.get(row.suite, (0, 0))
            out[row.suite] = (good + row.ok, total + 1)
    return out


def print_table(rows: list[Row]) -> None:
    header = (
        "suite",
        "reference",
        "kind",
        "shape",
        "voxels",
        "geometry",
        "bval/bvec",
        "sidecar",
        "fields*",
    )
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.suite,
                r.reference,
                r.kind,
                _mark(r.shape),
                _mark(r.voxels),
                _mark(r.geometry),
                _mark(r.diffusion),
                _mark(r.sidecar),
                _mark(r.fields),
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    print()
    for r in rows:
        if r.detail and (not r.ok or not r.counted):
            print(f"{r.suite}/{r.reference}: {'; '.join(r.detail)}")
    for r in rows:
        if r.notes:
            print(f"{r.suite}/{r.reference} (fields*, not counted): {'; '.join(r.notes)}")
    print()
    print(
        "* fields: a reference NIfTI's sidecar compared on "
        + ", ".join(KEY_FIELDS)
        + " (shown, not counted in the rate)"
    )
    print()
    print("suite            matched  rate")
    for suite, (good, total) in rates(rows).items():
        print(f"{suite:<16} {good:>3}/{total:<3}  {100.0 * good / total:5.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--suite", action="append", choices=SUITES)
    parser.add_argument(
        "--ingest", action="append", default=[], help="an ingest setting, KEY=VALUE"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ingest = dict(item.split("=", 1) for item in args.ingest)
    rows = run(args.data, args.suite or list(SUITES), ingest)
    print_table(rows)
    return 0 if all(good == total for good, total in rates(rows).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
