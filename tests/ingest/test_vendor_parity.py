"""GE diffusion and phase encoding, Siemens slice timing and Philips echoes as dcm2niix gives
them, on tiny DICOM files written here with pydicom.

Each test asserts numbers worked out by hand from what dcm2niix's source does (named in each
test), and, where the PyPI ``dcm2niix`` is installed next to this Python (or on PATH), runs
it on the same files and compares: b-values exactly, b-vectors as world directions (each
file's vectors through its own voxel axes, sign included), sidecar fields with dcm2niix's
row order flipped (its ``j-`` is our ``j``). Without the binary that part is skipped.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medcnn.io.deid import keyed_uid, resolve_secret
from tests.ingest.dicom_series_builder import save, write_slices
from tests.ingest.test_dcm2niix_parity import ingest
from tests.io.synthetic import AXIAL, base_dataset, slice_ipps

GE = "GE MEDICAL SYSTEMS"


def dcm2niix_binary() -> str | None:
    beside = Path(sys.executable).parent / "dcm2niix"
    return str(beside) if beside.is_file() else shutil.which("dcm2niix")


def run_dcm2niix(folder: Path, out: Path) -> list[dict]:
    """dcm2niix's outputs for ``folder`` (one dict per NIfTI), or a skip without it."""
    binary = dcm2niix_binary()
    if binary is None:
        pytest.skip(
            "dcm2niix not found (the PyPI package of the dev extra, which make test installs): "
            "the second check of this test, against dcm2niix itself, is skipped"
        )
    out.mkdir(parents=True)
    subprocess.run(
        [binary, "-z", "n", "-b", "y", "-f", "%s_%e", "-o", str(out), str(folder)],
        check=True,
        capture_output=True,
    )
    found = []
    for nii in sorted(out.glob("*.nii")):
        item = {"img": nib.load(nii), "sidecar": json.loads(nii.with_suffix(".json").read_text())}
        for suffix in (".bval", ".bvec"):
            if nii.with_suffix(suffix).is_file():
                item[suffix] = nii.with_suffix(suffix).read_text()
        found.append(item)
    return found


def world_vectors(bvec_text: str, affine: np.ndarray) -> np.ndarray:
    """FSL b-vectors (x negated when the affine's determinant is positive) as unit world
    directions, one row per volume."""
    vox = np.array([line.split() for line in bvec_text.splitlines()], dtype=float)
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if np.linalg.det(axes) > 0:
        vox[0] *= -1
    world = (axes @ vox).T
    norms = np.linalg.norm(world, axis=1, keepdims=True)
    return np.where(norms > 1e-6, world / np.where(norms > 1e-6, norms, 1.0), 0.0)


def bvec_array(text: str) -> np.ndarray:
    return np.array([line.split() for line in text.splitlines()], dtype=float)


def ge_dwi(
    folder: Path,
    gradients,
    bvalues,
    phase_encoding="COL",
    position="HFS",
    iop=AXIAL,
    directions=None,
) -> Path:
    """A GE DWI: 3 slices per volume, b in (0043,1039) with GE's 10^9 offset, the direction
    along the logical axes in (0019,10BB-10BD)."""
    gradients, bvalues = list(gradients), list(bvalues)
    assert len(gradients) == len(bvalues)

    def each(ds, volume, z):
        ds.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
        ds.add_new((0x0043, 0x1039), "IS", [1_000_000_000 + int(bvalues[volume]), 8, 0, 0])
        ds.add_new((0x0019, 0x0010), "LO", "GEMS_ACQU_01")
        for element, value in zip((0x10BB, 0x10BC, 0x10BD), gradients[volume], strict=True):
            ds.add_new((0x0019, element), "DS", f"{value:.6g}")
        if directions is not None:
            ds.add_new((0x0019, 0x10E0), "DS", str(directions))

    tags = {"InPlanePhaseEncodingDirection": phase_encoding} if phase_encoding else {}
    write_slices(
        folder,
        np.random.default_rng(21),
        slice_ipps(3, iop=iop),
        volumes=len(gradients),
        iop=iop,
        each=each,
        SeriesNumber=5,
        Manufacturer=GE,
        PatientPosition=position,
        ScanningSequence="EP",
        MRAcquisitionType="2D",
        EchoTime=80,
        RepetitionTime=5000,
        **tags,
    )
    return folder


GRADIENTS = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.6, 0.8)]
BVALUES = [0, 1000, 1000, 1000]


def compare_with_dcm2niix(folder: Path, tmp_path: Path, ours: dict) -> None:
    (theirs,) = run_dcm2niix(folder, tmp_path / "dcm2niix")
    assert ours[".bval"].split() == theirs[".bval"].split()
    np.testing.assert_allclose(
        world_vectors(ours[".bvec"], ours["img"].affine),
        world_vectors(theirs[".bvec"], theirs["img"].affine),
        atol=1e-4,
    )


@pytest.mark.parametrize(
    ("phase_encoding", "position", "expected"),
    [
        # By hand (geCorrectBvecs, axial: slice axis negated, then y, then all; dcm2niix's
        # axes are row, -column, normal), then along our axes (row, column, normal; the
        # determinant is positive here, so x is negated, FSL's convention):
        # COL: GE (gx, gy, gz) -> dcm2niix (-gx, gy, gz) -> LPS (-gx, -gy, gz) -> ours
        # (gx, -gy, gz). ROW first swaps: (gy, -gx, gz) -> ... -> ours (gy, gx, gz).
        ("COL", "HFS", [(1, 0, 0), (0, -1, 0), (0, -0.6, 0.8)]),
        ("ROW", "HFS", [(0, 1, 0), (1, 0, 0), (0.6, 0, 0.8)]),
        # dcm2niix v1.0.20260724 reorients feet-first the same way (with a warning).
        ("COL", "FFS", [(1, 0, 0), (0, -1, 0), (0, -0.6, 0.8)]),
    ],
)
def test_ge_dwi_bvecs_as_dcm2niix(tmp_path, phase_encoding, position, expected):
    folder = ge_dwi(tmp_path / "in", GRADIENTS, BVALUES, phase_encoding, position)
    (out,) = ingest(folder, tmp_path)
    assert np.asarray(out["img"].dataobj).shape == (5, 4, 3, 4)
    assert out[".bval"].split() == ["0", "1000", "1000", "1000"]
    bvec = bvec_array(out[".bvec"])
    np.testing.assert_allclose(bvec[:, 0], 0.0)
    np.testing.assert_allclose(bvec[:, 1:].T, np.array(expected, dtype=float), atol=1e-6)
    warned = any("not head first supine" in w for w in out["sidecar"]["Warnings"])
    assert warned == (position != "HFS")
    compare_with_dcm2niix(folder, tmp_path, out)


@pytest.mark.parametrize(
    ("iop", "phase_encoding"),
    [
        ((0.0, 1.0, 0.0, 0.0, 0.0, -1.0), "COL"),  # sagittal
        ((1.0, 0.0, 0.0, 0.0, 0.0, -1.0), "ROW"),  # coronal, row phase encoding
        ((0.866025, 0.5, 0.0, -0.5, 0.866025, 0.0), "COL"),  # oblique axial
        ((0.0, 0.707107, -0.707107, 0.0, 0.707107, 0.707107), "ROW"),  # oblique sagittal
    ],
)
def test_ge_dwi_bvecs_in_other_orientations_match_dcm2niix(tmp_path, iop, phase_encoding):
    folder = ge_dwi(tmp_path / "in", GRADIENTS, BVALUES, phase_encoding, iop=iop)
    (out,) = ingest(folder, tmp_path)
    assert out[".bval"].split() == ["0", "1000", "1000", "1000"]
    compare_with_dcm2niix(folder, tmp_path, out)


def test_ge_dwi_short_vectors_scale_the_bvalue(tmp_path):
    """|g| between 0.03 and 0.97: b * |g|^2 rounded to 5 s/mm2, the vector rescaled
    (dcm2niix issues 163, 245)."""
    gradients = [(0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (0.0, 0.7071, 0.0), (0.3, 0.4, 0.0)]
    folder = ge_dwi(tmp_path / "in", gradients, BVALUES)
    (out,) = ingest(folder, tmp_path)
    assert out[".bval"].split() == ["0", "250", "500", "250"]
    bvec = bvec_array(out[".bvec"])
    np.testing.assert_allclose(bvec[:, 3], [0.6, -0.8, 0.0], atol=1e-6)
    compare_with_dcm2niix(folder, tmp_path, out)


def test_ge_dwi_without_phase_encoding_axis_gets_bval_and_no_bvec(tmp_path):
    """geCorrectBvecs cannot reorient without (0018,1312) ROW or COL: .bval, no .bvec and a
    warning that names the series."""
    folder = ge_dwi(tmp_path / "in", GRADIENTS, BVALUES, phase_encoding="")
    (out,) = ingest(folder, tmp_path)
    assert out[".bval"].split() == ["0", "1000", "1000", "1000"]
    assert ".bvec" not in out
    warnings = out["sidecar"]["Warnings"]
    assert any("series 5" in w and "(0018,1312)" in w for w in warnings)
    assert any("series 5" in w and "no .bvec" in w for w in warnings)


@pytest.mark.parametrize(("directions", "parts"), [(0, 2), (3, 1), (None, 1)])
def test_ge_bvalue_without_direction_is_trace_only_when_ge_says_no_directions(
    tmp_path, directions, parts
):
    """b > 0 with a zero vector: a derived trace volume when (0019,10E0) is 0 (written apart,
    as dcm2niix's _ADC), otherwise a b = 0 volume (nii_SaveDTI, issue 245)."""
    gradients = [*GRADIENTS, (0.0, 0.0, 0.0)]
    folder = ge_dwi(tmp_path / "in", gradients, [*BVALUES, 1000], directions=directions)
    outputs = ingest(folder, tmp_path)
    assert len(outputs) == parts
    dwi = max(outputs, key=lambda o: np.asarray(o["img"].dataobj).ndim)
    expected = ["0", "1000", "1000", "1000"] + ([] if parts == 2 else ["0"])
    assert dwi[".bval"].split() == expected


def ge_user_data(version: float, flipped: bool, bottom_up: bool, epi: bool = True) -> bytes:
    """GE's (0043,102A) block with the fields dcm2niix reads (little endian)."""
    offset = 64
    raw = bytearray(offset + 1200)
    struct.pack_into("<H", raw, 24, offset)
    struct.pack_into("<f", raw, offset, version)
    base = offset + (0x4C if version >= 25.002 else 0)
    ky = 0x394 - (0x8C if version >= 25.002 else 0)
    struct.pack_into("<H", raw, base + 0x3A, 0x800 if epi else 0)
    struct.pack_into("<H", raw, base + 0x30, 4 if flipped else 0)
    struct.pack_into("<H", raw, base + ky, 2 if bottom_up else 0)
    return bytes(raw)


def ge_epi(folder: Path, phase_encoding: str, reordering=None, user_data=None) -> Path:
    def each(ds, volume, z):
        if reordering:
            ds.RectilinearPhaseEncodeReordering = reordering
        if user_data is not None:
            ds.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
            ds.add_new((0x0043, 0x102A), "OB", user_data)

    write_slices(
        folder,
        np.random.default_rng(22),
        slice_ipps(3),
        volumes=2,
        volume_tag="TemporalPositionIdentifier",
        each=each,
        SeriesNumber=7,
        Manufacturer=GE,
        ScanningSequence="EP",
        MRAcquisitionType="2D",
        InPlanePhaseEncodingDirection=phase_encoding,
        EchoTime=30,
        RepetitionTime=2000,
    )
    return folder


@pytest.mark.parametrize("phase_encoding", ["COL", "ROW"])
@pytest.mark.parametrize(
    ("reordering", "user_data", "polarity"),
    [
        ("LINEAR", None, "Flipped"),
        ("REVERSE_LINEAR", None, "Unflipped"),
        ("LINEAR", ge_user_data(24.0, False, False), "Flipped"),  # (0018,9034) comes first
        ("CENTRIC", ge_user_data(24.0, True, False), "Flipped"),  # says nothing: the block
        (None, ge_user_data(24.0, False, False), "Unflipped"),
        (None, ge_user_data(24.0, True, False), "Flipped"),
        (None, ge_user_data(24.0, True, True), "Unflipped"),  # bottom-up ky inverts
        (None, ge_user_data(26.0, False, True), "Flipped"),  # fields moved from 25.002
        (None, ge_user_data(24.0, True, False, epi=False), None),  # not EPI: unknown
        (None, None, None),
    ],
)
def test_ge_phase_encoding_polarity_as_dcm2niix(
    tmp_path, phase_encoding, reordering, user_data, polarity
):
    folder = ge_epi(tmp_path / "in", phase_encoding, reordering, user_data)
    (out,) = ingest(folder, tmp_path)
    sidecar = out["sidecar"]
    axis = "j" if phase_encoding == "COL" else "i"
    assert sidecar["PhaseEncodingAxis"] == axis
    assert sidecar.get("PhaseEncodingPolarityGE") == polarity
    # Unflipped is dcm2niix's PhaseEncodingDirectionPositive 1: along the DICOM column
    # (row) direction, which is our j (i); dcm2niix, whose rows run the other way, writes j-.
    expected = None if polarity is None else axis + ("" if polarity == "Unflipped" else "-")
    assert sidecar.get("PhaseEncodingDirection") == expected
    (theirs,) = run_dcm2niix(folder, tmp_path / "dcm2niix")
    direction = theirs["sidecar"].get("PhaseEncodingDirection")
    if direction and direction[0] == "j":
        direction = "j" if direction.endswith("-") else "j-"
    assert direction == expected
    assert theirs["sidecar"].get("PhaseEncodingPolarityGE") == polarity


def hhmmss(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}{int(minutes):02d}{secs:09.6f}"


def siemens_2d(folder: Path, offsets, volumes=3, start=36000.0, **tags) -> Path:
    """A Siemens single-frame 2D series: slice z of volume v acquired at
    start + 2 v + offsets[z] (s since midnight)."""

    def each(ds, volume, z):
        ds.AcquisitionTime = hhmmss(start + 2.0 * volume + offsets[z])

    write_slices(
        folder,
        np.random.default_rng(23),
        slice_ipps(len(offsets)),
        volumes=volumes,
        volume_tag="AcquisitionNumber",
        each=each,
        SeriesNumber=9,
        ImageType=["ORIGINAL", "PRIMARY", "M", "ND"],
        ScanningSequence="EP",
        RepetitionTime=2000.0,
        EchoTime=30.0,
        **{"MRAcquisitionType": "2D", "Manufacturer": "SIEMENS", **tags},
    )
    return folder


@pytest.mark.parametrize(
    ("offsets", "volumes", "start", "tags", "expected"),
    [
        ([0.0, 1.0, 0.5, 1.5], 3, 36000.0, {}, [0.0, 1.0, 0.5, 1.5]),  # interleaved
        ([0.5, 0.0, 1.0, 1.5], 1, 36000.0, {}, [0.5, 0.0, 1.0, 1.5]),  # one volume too
        # dcm2niix holds HHMMSS.ffffff in single precision: 100000.2 is 100000.203125.
        ([0.2, 0.1, 0.0, 0.3], 2, 36000.0, {}, [0.203125, 0.1015625, 0.0, 0.296875]),
        ([0.0, 0.5, 1.0, 1.5], 2, 36059.2, {}, [0.0, 0.5, 1.0, 1.5]),  # across a minute
        ([0.0, 1.0, 0.5, 1.5], 3, 36000.0, {"MRAcquisitionType": "3D"}, None),
        ([0.0, 0.0, 0.0, 0.0], 3, 36000.0, {}, None),
    ],
)
def test_siemens_non_mosaic_slice_timing_as_dcm2niix(
    tmp_path, offsets, volumes, start, tags, expected
):
    folder = siemens_2d(tmp_path / "in", offsets, volumes, start, **tags)
    (out,) = ingest(folder, tmp_path)
    timing = out["sidecar"].get("SliceTiming")
    if expected is None:
        assert timing is None
    else:
        np.testing.assert_allclose(timing, expected, atol=1e-6)
    (theirs,) = run_dcm2niix(folder, tmp_path / "dcm2niix")
    reference = theirs["sidecar"].get("SliceTiming")
    assert (reference is None) == (expected is None)
    if reference is not None:
        np.testing.assert_allclose(timing, reference, atol=1e-4)  # dcm2niix prints 5 digits


@pytest.mark.parametrize("manufacturer", ["Philips Medical Systems", "GE MEDICAL SYSTEMS"])
def test_no_slice_timing_from_acquisition_times_where_dcm2niix_writes_none(tmp_path, manufacturer):
    """Philips single-frame series and GE ones without a protocol block get none."""
    folder = siemens_2d(tmp_path / "in", [0.0, 1.0, 0.5, 1.5], Manufacturer=manufacturer)
    (out,) = ingest(folder, tmp_path)
    assert "SliceTiming" not in out["sidecar"]
    (theirs,) = run_dcm2niix(folder, tmp_path / "dcm2niix")
    assert "SliceTiming" not in theirs["sidecar"]


def philips_b0_file(path: Path, b0_first: bool) -> Path:
    """A Philips enhanced B0-map file: a magnitude volume and a field map in Hz (3 slices
    each), told apart by their frame type, component and dimension index values; with
    ``b0_first`` the field map's dimension indices sort first."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    def seq(**values) -> DicomSequence:
        item = Dataset()
        for key, value in values.items():
            setattr(item, key, value)
        return DicomSequence([item])

    ds = base_dataset(
        "1.2.840.10008.5.1.4.1.1.4.1",
        InstanceNumber=1,
        SeriesNumber=801,
        Manufacturer="Philips Medical Systems",
        ImageType=["ORIGINAL", "PRIMARY", "T1", "MIXED"],
        MRAcquisitionType="3D",
    )
    shared = Dataset()
    shared.PlaneOrientationSequence = seq(ImageOrientationPatient=list(AXIAL))
    shared.PixelMeasuresSequence = seq(PixelSpacing=[0.5, 0.8], SliceThickness=2.0)
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    pointers = []
    for pointer in (0x00209056, 0x00209057, 0x2005106E, 0x20051011):
        item = Dataset()
        item.DimensionIndexPointer = pointer
        pointers.append(item)
    ds.DimensionIndexSequence = DicomSequence(pointers)
    rng = np.random.default_rng(24)
    frames, items = [], []
    kinds = [
        ("M", "MAGNITUDE", "1", 1.27985, 0.0, [2, 0]),
        ("FIELD_MAP", "REAL", "Hz", 0.2442, -500.0, [5, 18]),
    ]
    if b0_first:
        kinds[0] = (*kinds[0][:5], [5, 18])
        kinds[1] = (*kinds[1][:5], [2, 0])
    for kind, component, units, slope, intercept, dims in kinds:
        for k, ipp in enumerate(slice_ipps(3)):
            item = Dataset()
            item.PlanePositionSequence = seq(ImagePositionPatient=[float(v) for v in ipp])
            item.FrameContentSequence = seq(
                StackID="1",
                InStackPositionNumber=k + 1,
                TemporalPositionIndex=1,
                DimensionIndexValues=[1, k + 1, *dims],
            )
            item.MREchoSequence = seq(EffectiveEchoTime=1.52 if kind == "M" else 0.0)
            item.MRImageFrameTypeSequence = seq(
                FrameType=["ORIGINAL", "PRIMARY", "T1", kind], ComplexImageComponent=component
            )
            item.PixelValueTransformationSequence = seq(
                RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US"
            )
            mapping = Dataset()
            mapping.MeasurementUnitsCodeSequence = seq(
                CodeValue=units, CodingSchemeDesignator="UCUM", CodeMeaning=units
            )
            mapping.RealWorldValueIntercept = intercept
            mapping.RealWorldValueSlope = slope
            mapping.RealWorldValueFirstValueMapped = 0
            mapping.RealWorldValueLastValueMapped = 4095
            mapping.LUTLabel = "Philips"
            item.RealWorldValueMappingSequence = DicomSequence([mapping])
            private = Dataset()
            block = private.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            block.add_new(0x0E, "FL", 4.095 if kind != "M" else 0.0084)
            block.add_new(0x11, "CS", "M" if kind == "M" else "B0")
            private.EchoNumbers = 1
            private.ImageType = (
                ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"]
                if kind == "M"
                else ["ORIGINAL", "PRIMARY", "B0 MAP", "B0", "UNSPECIFIED"]
            )
            outer = item.private_block(0x2005, "Philips MR Imaging DD 005", create=True)
            outer.add_new(0x0F, "SQ", DicomSequence([private]))
            items.append(item)
            frames.append(rng.integers(0, 4096, (4, 5)).astype(np.uint16))
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    return save(ds, np.stack(frames), path)


@pytest.mark.parametrize("b0_first", [False, True])
def test_philips_b0_map_volumes_numbered_as_echoes_like_dcm2niix(tmp_path, b0_first):
    """dcm2niix writes an enhanced file's volumes that differ in type one by one, numbered
    as echoes in the order of their dimension indices (a field map after its magnitude is
    echo 2), whatever the frames' own EchoNumbers say (all 1 here)."""
    folder = tmp_path / "in"
    philips_b0_file(folder / "b0.dcm", b0_first)
    outputs = ingest(folder, tmp_path)
    assert len(outputs) == 2
    echoes = {o["sidecar"]["ImageComponent"]: o["sidecar"]["EchoNumber"] for o in outputs}
    assert echoes == (
        {"fieldmap": 1, "magnitude": 2} if b0_first else {"magnitude": 1, "fieldmap": 2}
    )
    theirs = run_dcm2niix(folder, tmp_path / "dcm2niix")
    by_type = {
        "fieldmap" if "FIELDMAPHZ" in t["sidecar"]["ImageType"] else "magnitude": t["sidecar"]
        for t in theirs
    }
    assert {k: v.get("EchoNumber") for k, v in by_type.items()} == echoes


def canon_dwi(folder: Path, manufacturer: str, phase_encoding: str, world: bool, comment: bool):
    """A Canon / Toshiba classic DWI: b in (0018,9087), the direction in (0018,9089) and/or
    ImageComments ``b=1000(x,y,z)``."""

    def each(ds, volume, z):
        gradient, bvalue = GRADIENTS[volume], BVALUES[volume]
        ds.DiffusionBValue = float(bvalue)
        if bvalue > 0 and world:
            ds.DiffusionGradientOrientation = [float(v) for v in gradient]
        if bvalue > 0 and comment:
            ds.ImageComments = "b={}({:g},{:g},{:g})".format(bvalue, *gradient)

    write_slices(
        folder,
        np.random.default_rng(25),
        slice_ipps(3),
        volumes=len(BVALUES),
        each=each,
        SeriesNumber=6,
        Manufacturer=manufacturer,
        PatientPosition="HFS",
        ScanningSequence=["SE", "EP"],
        MRAcquisitionType="2D",
        InPlanePhaseEncodingDirection=phase_encoding,
    )
    return folder


@pytest.mark.parametrize(
    ("manufacturer", "phase_encoding", "world", "comment", "expected"),
    [
        # Canon classic: image space, read as GE's logical axes (geCorrectBvecs). From the
        # comment, (x, y, z) is taken as (y, x, z): COL axial then gives ours (y, -x, z).
        ("CANON_MEC", "COL", False, True, [(0, -1, 0), (1, 0, 0), (0.6, 0, 0.8)]),
        ("CANON_MEC", "ROW", False, True, None),
        # (0018,9089) of a Canon classic file, also image space (before the comment).
        ("CANON_MEC", "COL", True, True, [(1, 0, 0), (0, -1, 0), (0, -0.6, 0.8)]),
        ("CANON_MEC", "ROW", True, False, [(0, 1, 0), (1, 0, 0), (0.6, 0, 0.8)]),
        # Toshiba with (0018,9089): patient (LPS) directions, as every other vendor.
        ("TOSHIBA_MEC", "COL", True, True, [(-1, 0, 0), (0, 1, 0), (0, 0.6, 0.8)]),
    ],
)
def test_canon_toshiba_diffusion_as_dcm2niix(
    tmp_path, manufacturer, phase_encoding, world, comment, expected
):
    folder = canon_dwi(tmp_path / "in", manufacturer, phase_encoding, world, comment)
    (out,) = ingest(folder, tmp_path)
    assert out[".bval"].split() == ["0", "1000", "1000", "1000"]
    if expected is not None:
        np.testing.assert_allclose(
            bvec_array(out[".bvec"])[:, 1:].T, np.array(expected, dtype=float), atol=1e-6
        )
    compare_with_dcm2niix(folder, tmp_path, out)


@pytest.mark.parametrize(
    ("gradients", "bvalues", "written"),
    [
        ([(0.0, 0.0, 0.0)] * 3, [0, 0, 0], False),  # GE fMRI: b = 0 in every file
        ([(1.0, 0.0, 0.0)] * 2, [1000, 1000], True),  # all b > 50
        ([(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)], [0, 10], True),  # b-values vary
    ],
)
def test_bval_bvec_files_only_where_dcm2niix_writes_them(tmp_path, gradients, bvalues, written):
    """nii_SaveDTI: no .bval/.bvec when every b-value is the same (and not all above 50)
    and no direction tells the volumes apart."""
    folder = ge_dwi(tmp_path / "in", gradients, bvalues)
    (out,) = ingest(folder, tmp_path)
    assert (".bval" in out) == written and (".bvec" in out) == written
    assert ("DiffusionVolumes" in out["sidecar"]) == written
    (theirs,) = run_dcm2niix(folder, tmp_path / "dcm2niix")
    assert (".bval" in theirs) == written


@pytest.mark.parametrize(
    "iop",
    [AXIAL, (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (0.877583, 0.479426, 0.0, 0.0, 0.0, -1.0)],
)
def test_uih_diffusion_directions_are_along_the_image_axes_as_dcm2niix(tmp_path, iop):
    """dcm2niix reads UIH's (0065,1037) along the row, column and normal (its
    siemensPhilipsCorrectBvecs only negates the column component, its row order)."""
    gradients = [*GRADIENTS[:3], (0.267, 0.535, 0.802)]

    def each(ds, volume, z):
        block = ds.private_block(0x0065, "Image Private Header", create=True)
        block.add_new(0x09, "FD", float(BVALUES[volume]))
        block.add_new(0x37, "FD", [float(v) for v in gradients[volume]])

    write_slices(
        tmp_path / "in",
        np.random.default_rng(26),
        slice_ipps(3, iop=iop),
        volumes=len(gradients),
        iop=iop,
        volume_tag="AcquisitionNumber",
        each=each,
        SeriesNumber=6,
        Manufacturer="UIH",
        ImageType=["ORIGINAL", "PRIMARY", "M", "ND"],
        MRAcquisitionType="2D",
    )
    (out,) = ingest(tmp_path / "in", tmp_path)
    bvec = bvec_array(out[".bvec"])
    # By hand: along our axes (row, column, normal) the vector is as given, x negated
    # where the determinant is positive (FSL).
    sign = -1.0 if np.linalg.det(out["img"].affine[:3, :3]) > 0 else 1.0
    for volume in (1, 2, 3):
        expected = np.array(gradients[volume], dtype=float)
        expected[0] *= sign
        np.testing.assert_allclose(bvec[:, volume], expected / np.linalg.norm(expected), atol=1e-5)
    compare_with_dcm2niix(tmp_path / "in", tmp_path, out)


@pytest.mark.parametrize("same_number", [True, False])
def test_siemens_xa_classic_volumes_under_separate_series_uids_are_stacked(tmp_path, same_number):
    """Siemens XA interoperability (classic) files give each volume its own
    SeriesInstanceUID; dcm2niix stacks single-frame XA files by SeriesTime (issue 394)."""
    study = generate_uid()
    rng = np.random.default_rng(27)
    stored = rng.integers(0, 1000, (2, 3, 4, 5)).astype(np.int16)  # volume, slice, rows, cols
    own_uids = [generate_uid() for _ in range(2)]
    for volume, own_uid in enumerate(own_uids):
        write_slices(
            tmp_path / "in",
            stored[volume : volume + 1],
            slice_ipps(3),
            name=f"V{volume}S{{z}}",
            study_uid=study,
            series_uid=own_uid,
            AcquisitionNumber=volume + 1,
            SeriesNumber=5 if same_number else 5 + volume,
            Manufacturer="SIEMENS",
            SoftwareVersions="syngo MR XA30",
            SeriesTime="095959.000000",
            ImageType=["ORIGINAL", "PRIMARY", "M", "ND"],
            MRAcquisitionType="2D",
        )
    (out,) = ingest(tmp_path / "in", tmp_path)
    data = np.asarray(out["img"].dataobj)
    assert data.shape == (5, 4, 3, 2)
    np.testing.assert_array_equal(data, stored.transpose(3, 2, 1, 0))
    sidecar = out["sidecar"]
    assert sidecar["SeriesNumber"] == 5
    # The first volume's own UID (keyed: deid.uids replace is the default).
    assert sidecar["SeriesInstanceUID"] == keyed_uid(own_uids[0], resolve_secret("parity-test"))
    assert sidecar["SeriesStacking"]["by"] == "SeriesTime"
    assert sidecar["SeriesStacking"]["series"] == 2
    (theirs,) = run_dcm2niix(tmp_path / "in", tmp_path / "dcm2niix")
    assert theirs["img"].shape == (5, 4, 3, 2)
    assert theirs["sidecar"]["SeriesNumber"] == 5


@pytest.mark.parametrize("phase_encoding", ["COL", "ROW"])
@pytest.mark.parametrize(("flag", "sign"), [("0", ""), ("1", "-"), (None, None)])
def test_uih_phase_encoding_polarity_as_dcm2niix(tmp_path, phase_encoding, flag, sign):
    """UIH's (0065,1058): 1 is flipped (against the DICOM row/column), 0 not."""

    def each(ds, volume, z):
        if flag is not None:
            block = ds.private_block(0x0065, "Image Private Header", create=True)
            block.add_new(0x58, "IS", flag)

    write_slices(
        tmp_path / "in",
        np.random.default_rng(28),
        slice_ipps(3),
        volumes=2,
        volume_tag="AcquisitionNumber",
        each=each,
        SeriesNumber=7,
        Manufacturer="UIH",
        ImageType=["ORIGINAL", "PRIMARY", "M", "ND"],
        MRAcquisitionType="2D",
        InPlanePhaseEncodingDirection=phase_encoding,
    )
    (out,) = ingest(tmp_path / "in", tmp_path)
    axis = "j" if phase_encoding == "COL" else "i"
    expected = None if sign is None else axis + sign
    assert out["sidecar"].get("PhaseEncodingDirection") == expected
    (theirs,) = run_dcm2niix(tmp_path / "in", tmp_path / "dcm2niix")
    direction = theirs["sidecar"].get("PhaseEncodingDirection")
    if direction and direction[0] == "j":
        direction = "j" if direction.endswith("-") else "j-"
    assert direction == expected


@pytest.mark.parametrize(("sequence", "written"), [("EP", True), ("SE", False)])
def test_single_ge_volume_with_a_bvalue_is_diffusion_only_when_epi(tmp_path, sequence, written):
    """geCorrectBvecs (issue 449): one volume of a non-EPI GE series gets no .bval/.bvec."""
    folder = ge_dwi(tmp_path / "in", [(1.0, 0.0, 0.0)], [1000])
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.ScanningSequence = sequence
        ds.save_as(path)
    (out,) = ingest(folder, tmp_path)
    assert (".bval" in out) == written
    (theirs,) = run_dcm2niix(folder, tmp_path / "dcm2niix")
    assert (".bval" in theirs) == written


@pytest.mark.parametrize(
    ("software", "expected"),
    [
        ("syngo MR XA30", [0.25, 0.15, 0.05, 0.0]),  # XA: TimeAfterStart
        ("syngo MR XA60", [0.25, 0.15, 0.05, 0.0]),
        ("syngo MR XA40", None),  # not XA to dcm2niix: TimeAfterStart leaves none
    ],
)
def test_siemens_xa_slice_timing_from_time_after_start(tmp_path, software, expected):
    folder = siemens_2d(tmp_path / "in", [0.0, 1.0, 0.5, 1.5], SoftwareVersions=software)
    after_start = [2.3, 2.2, 2.1, 2.05]
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        # (0021,1104): the element dcm2niix reads, in the block of (0021,0011).
        ds.add_new((0x0021, 0x0011), "LO", "SIEMENS MR SDI 02")
        ds.add_new((0x0021, 0x1104), "DS", f"{after_start[(ds.InstanceNumber - 1) % 4]:g}")
        ds.save_as(path)
    (out,) = ingest(folder, tmp_path)
    timing = out["sidecar"].get("SliceTiming")
    (theirs,) = run_dcm2niix(folder, tmp_path / "dcm2niix")
    reference = theirs["sidecar"].get("SliceTiming")
    if expected is None:
        assert timing is None and reference is None
    else:
        np.testing.assert_allclose(timing, expected, atol=1e-6)
        np.testing.assert_allclose(timing, reference, atol=1e-4)


def test_siemens_xa40_classic_series_are_not_stacked(tmp_path):
    """dcm2niix's XA test leaves XA40 out: separate SeriesInstanceUIDs stay apart."""
    for volume in range(2):
        siemens_2d(
            tmp_path / "in" / f"v{volume}",
            [0.0, 1.0, 0.5],
            volumes=1,
            SoftwareVersions="syngo MR XA40",
            SeriesTime="095959.000000",
        )
    assert len(ingest(tmp_path / "in", tmp_path)) == 2


@pytest.mark.parametrize(("mode", "moved"), [(None, []), (1, []), (2, [1, 3]), (3, [2, 4])])
def test_ge_epi_pepolar_reversed_volumes_as_dcm2niix(tmp_path, mode, moved):
    """GE epi_pepolar (0019,109C) with user data 12 (0019,10B3): reversed volumes get the
    other polarity and their rows reversed; alternating ones are SeriesNumber + 1000."""
    rng = np.random.default_rng(29)
    stored = rng.integers(0, 1000, (4, 3, 4, 5)).astype(np.int16)  # volume, slice, rows, cols

    def each(ds, volume, z):
        ds.add_new((0x0019, 0x0010), "LO", "GEMS_ACQU_01")
        ds.add_new((0x0019, 0x109C), "LO", "epi_pepolar")
        if mode is not None:
            ds.add_new((0x0019, 0x10B3), "DS", str(mode))

    write_slices(
        tmp_path / "in",
        stored,
        slice_ipps(3),
        volume_tag="TemporalPositionIdentifier",
        each=each,
        SeriesNumber=8,
        Manufacturer=GE,
        MRAcquisitionType="2D",
        ScanningSequence="EP",
        InPlanePhaseEncodingDirection="COL",
        RectilinearPhaseEncodeReordering="LINEAR",
    )
    outputs = {o["sidecar"]["SeriesNumber"]: o for o in ingest(tmp_path / "in", tmp_path)}
    assert sorted(outputs) == ([8, 1008] if moved else [8])
    reversed_all = mode == 1
    for number, out in outputs.items():
        volumes = moved if number == 1008 else [v for v in (1, 2, 3, 4) if v not in moved]
        expected = stored[[v - 1 for v in volumes]].transpose(3, 2, 1, 0)  # (i, j, k, t)
        flipped = number == 1008 or reversed_all
        if flipped:
            expected = expected[:, ::-1]
        np.testing.assert_array_equal(np.asarray(out["img"].dataobj), expected)
        # LINEAR is flipped (j- here); a reversed volume is the other way round.
        assert out["sidecar"]["PhaseEncodingDirection"] == ("j" if flipped else "j-")
    theirs = run_dcm2niix(tmp_path / "in", tmp_path / "dcm2niix")
    assert sorted(t["sidecar"]["SeriesNumber"] for t in theirs) == sorted(outputs)
    for t in theirs:
        ours = nib.as_closest_canonical(outputs[t["sidecar"]["SeriesNumber"]]["img"])
        reference = nib.as_closest_canonical(t["img"])
        np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(reference.dataobj))
        np.testing.assert_allclose(ours.affine, reference.affine, atol=1e-3)
