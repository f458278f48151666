"""Grouping, scaling and layout as dcm2niix, on tiny real DICOM files written here.

Each test writes a few files with pydicom (fixed seeds), runs ``run_ingest`` the way a user
would, and checks voxel values, geometry and sidecars against numbers worked out by hand
from the DICOM standard and from what dcm2niix documents.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from medcnn.config import validate_config
from medcnn.ingest.manifest import read_manifest, read_quarantine
from medcnn.ingest.pipeline import run_ingest
from medcnn.io.rgb import RGB24
from tests.ingest.dicom_series_builder import save, write_slices
from tests.io.synthetic import (
    AXIAL,
    ENHANCED_MR_STORAGE,
    PATIENT_ID,
    base_dataset,
    expected_world,
    random_volume,
    slice_ipps,
)


def ingest(root: Path, tmp_path: Path, **ingest_settings) -> list[dict]:
    """Convert ``root``; one dict per output: manifest row, sidecar, image, text files."""
    results = tmp_path / "results"
    config = validate_config(
        {
            "results": str(results),
            "inputs": [str(root)],
            "deid": {"secret": "parity-test"},
            "ingest": ingest_settings,
            "tasks": {"t": {"kind": "classification", "target": {"column": "f", "positive": "p"}}},
        }
    )
    run_ingest(config)
    assert read_quarantine(results / "ingest" / "quarantine.tsv").empty
    outputs = []
    for _, row in read_manifest(results / "ingest" / "manifest.tsv").iterrows():
        nii = results / row["path"]
        stem = nii.name[: -len(".nii.gz")]
        extra = {s: nii.with_name(stem + s) for s in (".bval", ".bvec")}
        outputs.append(
            {
                "row": row,
                "sidecar": json.loads((results / row["sidecar"]).read_text()),
                "img": nib.load(nii),
                **{s: p.read_text() for s, p in extra.items() if p.is_file()},
            }
        )
    return outputs


def test_two_series_numbers_in_one_series_uid_are_two_outputs(tmp_path):
    volume = random_volume((6, 4, 5), seed=1)

    def each(ds, v, z):
        ds.SeriesNumber = 7 + v

    write_slices(  # the same three positions under SeriesNumber 7, then 8
        tmp_path / "in", volume.reshape(2, 3, 4, 5), slice_ipps(3), name="IM{index:04d}", each=each
    )
    outputs = ingest(tmp_path / "in", tmp_path)
    assert len(outputs) == 2
    by_number = {o["sidecar"]["SeriesNumber"]: o for o in outputs}
    assert sorted(by_number) == [7, 8]
    for number, first in ((7, 0), (8, 3)):
        out = by_number[number]
        data = np.asarray(out["img"].dataobj)
        assert data.shape == (5, 4, 3)
        np.testing.assert_array_equal(data, volume[first : first + 3].transpose(2, 1, 0))
        split = out["sidecar"]["SeriesSplit"]
        assert split["by"] == {"series_number": str(number)}
        assert "SeriesNumber" in split["explanation"]


def enhanced_file(
    path: Path, frames: np.ndarray, ipps, temporal, series_uid: str, study_uid: str, instance=1
) -> Path:
    ds = base_dataset(
        ENHANCED_MR_STORAGE,
        InstanceNumber=instance,
        ImageType=["ORIGINAL", "PRIMARY", "M", "NONE"],
        StudyInstanceUID=study_uid,
        SeriesInstanceUID=series_uid,
        SeriesNumber=4,
    )
    shared = Dataset()
    plane = Dataset()
    plane.ImageOrientationPatient = list(AXIAL)
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.8]
    measures.SliceThickness = 2.0
    shared.PlaneOrientationSequence = DicomSequence([plane])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    items = []
    for ipp, t in zip(ipps, temporal, strict=True):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [float(v) for v in ipp]
        item.PlanePositionSequence = DicomSequence([position])
        content = Dataset()
        content.StackID = "1"
        content.TemporalPositionIndex = int(t)
        item.FrameContentSequence = DicomSequence([content])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(items)
    return save(ds, np.asarray(frames, dtype=np.uint16), path)


def test_enhanced_multiframe_with_two_volumes_is_one_4d_series(tmp_path):
    frames = random_volume((6, 4, 5), seed=2).astype(np.uint16)
    ipps = slice_ipps(3)
    study, series = generate_uid(), generate_uid()
    # One file, frames interleaved as some scanners store them: (t1 z1, t2 z1, t1 z2, ...).
    order = [(t, z) for z in range(3) for t in range(2)]
    stored = np.stack([frames[t * 3 + z] for t, z in order])
    enhanced_file(
        tmp_path / "in" / "one.dcm",
        stored,
        [ipps[z] for _, z in order],
        [t + 1 for t, _ in order],
        series,
        study,
    )
    outputs = ingest(tmp_path / "in", tmp_path)
    assert len(outputs) == 1
    data = np.asarray(outputs[0]["img"].dataobj)
    assert data.shape == (5, 4, 3, 2)
    for t in range(2):
        np.testing.assert_array_equal(data[..., t], frames[t * 3 : t * 3 + 3].transpose(2, 1, 0))


def test_enhanced_files_of_one_series_are_stacked_in_time(tmp_path):
    frames = random_volume((6, 4, 5), seed=3).astype(np.uint16)
    ipps = slice_ipps(3)
    study, series = generate_uid(), generate_uid()
    for t in range(2):  # one file per volume (Siemens XA)
        enhanced_file(
            tmp_path / "in" / f"vol{t}.dcm",
            frames[t * 3 : t * 3 + 3],
            ipps,
            [t + 1] * 3,
            series,
            study,
            instance=t + 1,
        )
    outputs = ingest(tmp_path / "in", tmp_path)
    assert len(outputs) == 1
    data = np.asarray(outputs[0]["img"].dataobj)
    assert data.shape == (5, 4, 3, 2)
    np.testing.assert_array_equal(data[..., 1], frames[3:6].transpose(2, 1, 0))


PHILIPS = "Philips Medical Systems"


def philips_tags(ds: Dataset, scale: float) -> None:
    ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x0E, "FL", scale)


def write_philips(folder: Path, stored: np.ndarray, slope: float, intercept: float, scale: float):
    write_slices(
        folder,
        stored[None].astype(np.uint16),
        slice_ipps(len(stored)),
        name="IM{index:04d}",
        slice_thickness=None,
        each=lambda ds, v, z: philips_tags(ds, scale),
        SeriesNumber=201,
        Manufacturer=PHILIPS,
        ImageType=["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"],
        RescaleSlope=slope,
        RescaleIntercept=intercept,
    )


@pytest.mark.parametrize("mode", ["precise", "display"])
def test_philips_precise_values_by_default(tmp_path, mode):
    stored = random_volume((3, 4, 5), seed=4).astype(np.uint16)
    write_philips(tmp_path / "in", stored, slope=2.5, intercept=-10.0, scale=0.004)
    settings = {} if mode == "precise" else {"philips_scaling": "display"}
    (out,) = ingest(tmp_path / "in", tmp_path, **settings)
    data = np.asarray(out["img"].dataobj, dtype=np.float64)
    display = stored.astype(np.float64) * 2.5 - 10.0
    # dcm2niix's precise value: DV / (RS * SS), DV = PV * RS + RI.
    expected = display / (2.5 * 0.004) if mode == "precise" else display
    np.testing.assert_allclose(data, expected.transpose(2, 1, 0), rtol=1e-6)
    sidecar = out["sidecar"]
    assert sidecar["PhilipsRescaleSlope"] == 2.5
    assert sidecar["PhilipsRescaleIntercept"] == -10.0
    assert sidecar["PhilipsScaleSlope"] == pytest.approx(0.004)
    assert sidecar["UsePhilipsFloatNotDisplayScaling"] == int(mode == "precise")
    assert sidecar["IntensityScaling"]["mode"] == mode
    assert sidecar["ImageType"] == ["ORIGINAL", "PRIMARY", "M", "FFE", "M", "FFE"]


def test_magnitude_and_phase_apart_and_phase_in_radians(tmp_path):
    rng = np.random.default_rng(5)
    magnitude = rng.integers(0, 4096, (3, 4, 5)).astype(np.uint16)
    phase = rng.integers(0, 4096, (3, 4, 5)).astype(np.uint16)
    study, series = generate_uid(), generate_uid()
    ipps = slice_ipps(3)
    for kind, stored, offset, rescale in (
        ("M", magnitude, 0, (1.0, 0.0)),
        ("P", phase, 3, (2.0, -4096.0)),
    ):
        write_slices(
            tmp_path / "in",
            stored[None],
            ipps,
            name=f"{kind}{{z}}",
            first_instance=offset + 1,
            study_uid=study,
            series_uid=series,
            slice_thickness=None,
            bits=12,
            SeriesNumber=9,
            Manufacturer="SIEMENS",
            ImageType=["ORIGINAL", "PRIMARY", kind, "ND"],
            RescaleSlope=rescale[0],
            RescaleIntercept=rescale[1],
        )
    outputs = ingest(tmp_path / "in", tmp_path)
    assert len(outputs) == 2
    by_kind = {o["sidecar"]["ImageComponent"]: o for o in outputs}
    assert sorted(by_kind) == ["magnitude", "phase"]
    np.testing.assert_array_equal(
        np.asarray(by_kind["magnitude"]["img"].dataobj), magnitude.transpose(2, 1, 0)
    )
    radians = np.asarray(by_kind["phase"]["img"].dataobj, dtype=np.float64)
    # Siemens: stored 0..4095, rescaled to -4096..4094, i.e. [-pi, pi) in 8192 steps.
    expected = (phase.astype(np.float64) * 2 - 4096) * math.pi / 4096
    np.testing.assert_allclose(radians, expected.transpose(2, 1, 0), atol=1e-6)
    assert radians.min() >= -math.pi and radians.max() < math.pi
    assert by_kind["phase"]["sidecar"]["PhaseUnits"] == "rad"
    assert by_kind["phase"]["sidecar"]["SeriesSplit"]["by"] == {"component": "phase"}


def uih_grid_file(
    path: Path, tiles: np.ndarray, corner, per_tile_positions=None, diffusion=None, **tags
) -> Path:
    """A UIH VFRAME mosaic: ``tiles`` (n, rows, columns) in a ceil(sqrt(n)) grid."""
    n, rows, cols = tiles.shape
    grid = math.ceil(math.sqrt(n))
    mosaic = np.zeros((grid * rows, grid * cols), dtype=np.uint16)
    for k in range(n):
        r, c = divmod(k, grid)
        mosaic[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols] = tiles[k]
    ds = base_dataset(
        InstanceNumber=tags.pop("InstanceNumber", 1),
        SeriesNumber=3,
        Manufacturer="UIH",
        ImageType=["ORIGINAL", "PRIMARY", "M", "VFRAME"],
        ImageOrientationPatient=list(AXIAL),
        ImagePositionPatient=[float(v) for v in corner],
        PixelSpacing=[0.5, 0.8],
        SpacingBetweenSlices=3.0,
        SliceThickness=2.5,
        **tags,
    )
    block = ds.private_block(0x0065, "Image Private Header", create=True)
    block.add_new(0x50, "DS", str(n))
    if diffusion is not None:
        bvalue, gradient = diffusion
        block.add_new(0x09, "FD", float(bvalue))
        block.add_new(0x37, "FD", [float(v) for v in gradient])
    if per_tile_positions is not None:
        items = []
        for ipp in per_tile_positions:
            item = Dataset()
            item.ImagePositionPatient = [float(v) for v in ipp]
            items.append(item)
        block.add_new(0x51, "SQ", DicomSequence(items))
    return save(ds, mosaic, path)


@pytest.mark.parametrize("with_tile_positions", [False, True])
def test_uih_vframe_mosaic_is_split_with_the_right_origin(tmp_path, with_tile_positions):
    tiles = random_volume((3, 4, 5), seed=6).astype(np.uint16)  # 3 tiles in a 2 x 2 grid
    header_ipp = np.array([-20.0, -30.0, 40.0])
    # By hand: the 10 x 8 mosaic holds 5 x 4 tiles (0.8 x 0.5 mm); tile k (row-major) is
    # slice k. The header's position is the first tile's (dcm2niix, checked with the PyPI
    # binary: unlike a Siemens mosaic's, it is not the corner of the whole mosaic); the
    # others are 3 mm apart along the normal (SpacingBetweenSlices, or the tiles' own
    # positions, here written 3 mm apart too, from another origin that only their
    # differences count from).
    positions = [header_ipp + np.array([0.0, 0.0, 3.0 * k]) for k in range(3)]
    own = [p + np.array([5.0, 7.0, 0.0]) for p in positions]
    uih_grid_file(
        tmp_path / "in" / "grid.dcm",
        tiles,
        header_ipp,
        per_tile_positions=own if with_tile_positions else None,
    )
    (out,) = ingest(tmp_path / "in", tmp_path)
    img = out["img"]
    data = np.asarray(img.dataobj)
    assert data.shape == (5, 4, 3)
    np.testing.assert_array_equal(data, tiles.transpose(2, 1, 0))
    for k in (0, 2):
        for i, j in ((0, 0), (4, 3)):
            world = (img.affine @ [i, j, k, 1.0])[:3]
            np.testing.assert_allclose(
                world, expected_world(positions[k], AXIAL, (0.5, 0.8), i, j), atol=1e-4
            )
    source = "tiles" if with_tile_positions else "slice spacing"
    assert out["sidecar"]["MosaicLayout"].endswith(source)


def test_colour_is_written_as_rgb24(tmp_path):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (2, 4, 5, 3)).astype(np.uint8)
    write_slices(
        tmp_path / "in",
        rgb[None],
        slice_ipps(2),
        name="C{z}",
        slice_thickness=None,
        bits=8,
        colour=True,
        SeriesNumber=12,
    )
    (out,) = ingest(tmp_path / "in", tmp_path)
    img = out["img"]
    assert img.header.get_data_dtype() == RGB24
    assert int(img.header["datatype"]) == 128 and int(img.header["intent_code"]) == 0
    data = np.asanyarray(img.dataobj)
    assert data.shape == (5, 4, 2)
    for index, channel in enumerate("RGB"):
        np.testing.assert_array_equal(data[channel], rgb[..., index].transpose(2, 1, 0))
    assert out["row"]["channels"] in (3, "3")


def test_empty_patient_id_is_converted_under_a_fallback_pseudonym(tmp_path):
    volume = random_volume((3, 4, 5), seed=8)
    study = generate_uid()
    for folder, series_number, patient_id in (("a", 1, None), ("b", 2, "")):
        for path in write_slices(
            tmp_path / "in" / folder,
            volume[None],
            slice_ipps(3),
            name="IM{index:04d}",
            study_uid=study,
            SeriesNumber=series_number,
        ):
            ds = pydicom.dcmread(path)
            if patient_id is None:
                del ds.PatientID  # absent
            else:
                ds.PatientID = patient_id  # empty, as the 2,040-file DWI of dcm_qa_philips
            ds.save_as(path)
    outputs = ingest(tmp_path / "in", tmp_path)
    assert len(outputs) == 2
    assert len({o["row"]["subject"] for o in outputs}) == 1  # one study: one subject
    for out in outputs:
        assert out["sidecar"]["SubjectSource"] == "StudyInstanceUID"
        assert study not in json.dumps(out["sidecar"]["Subject"])
        assert PATIENT_ID not in json.dumps(out["sidecar"])
        np.testing.assert_array_equal(np.asarray(out["img"].dataobj), volume.transpose(2, 1, 0))


def test_philips_dwi_derived_volume_apart_and_bvecs_in_image_space(tmp_path):
    """b=0, two directions and the derived isotropic (trace) image, per slice."""
    rng = np.random.default_rng(9)
    # An oblique slab: rows run along LPS (cos 30, sin 30, 0), columns along (-sin, cos, 0).
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    iop = (c, s, 0.0, -s, c, 0.0)
    gradients = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.6, 0.8), (0.0, 0.0, 0.0)]
    bvalues = [0.0, 1000.0, 1000.0, 1000.0]
    directions = ["I", "O", "O", "I"]  # Philips marks b=0 and the derived trace "I"
    stored = rng.integers(0, 1000, (3, 4, 4, 5)).astype(np.uint16)  # slice, volume, rows, cols

    def each(ds, v, z):
        block = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
        block.add_new(0x03, "FL", bvalues[v])
        block.add_new(0x04, "CS", directions[v])
        grad = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        for element, value in zip((0xB0, 0xB1, 0xB2), gradients[v], strict=True):
            grad.add_new(element, "FL", value)

    write_slices(
        tmp_path / "in",
        stored.swapaxes(0, 1),
        slice_ipps(3, iop=iop),
        iop=iop,
        slice_major=True,
        slice_thickness=None,
        each=each,
        SeriesNumber=601,
        Manufacturer=PHILIPS,
        ImageType=["ORIGINAL", "PRIMARY", "M_SE", "M", "SE"],
        InPlanePhaseEncodingDirection="COL",
    )
    outputs = ingest(tmp_path / "in", tmp_path)
    assert len(outputs) == 2
    dwi = next(
        o
        for o in outputs
        if "SeriesSplit" not in o["sidecar"]
        or o["sidecar"]["SeriesSplit"]["by"]["diffusion"] == "acquired"
    )
    trace = next(o for o in outputs if o is not dwi)
    assert np.asarray(dwi["img"].dataobj).shape == (5, 4, 3, 3)
    assert np.asarray(trace["img"].dataobj).shape == (5, 4, 3)
    np.testing.assert_array_equal(np.asarray(trace["img"].dataobj), stored[:, 3].transpose(2, 1, 0))
    assert dwi[".bval"].split() == ["0", "1000", "1000"]
    bvec = np.array([line.split() for line in dwi[".bvec"].splitlines()], dtype=float)
    assert bvec.shape == (3, 3)
    # By hand: our voxel axes are i = row direction, j = column direction, k = normal (all
    # LPS); a gradient's components along them, with i negated when det > 0 (FSL).
    axes = np.array([iop[:3], iop[3:6], np.cross(iop[:3], iop[3:6])])  # rows: i, j, k in LPS
    sign = -1.0 if np.linalg.det(dwi["img"].affine[:3, :3]) > 0 else 1.0
    for v in (1, 2):
        expected = axes @ np.asarray(gradients[v])
        expected[0] *= sign
        np.testing.assert_allclose(bvec[:, v], expected, atol=1e-5)
    np.testing.assert_allclose(bvec[:, 0], 0.0)
    assert dwi["sidecar"]["PhaseEncodingAxis"] == "j"


def test_series_without_positions_is_centred_on_the_origin(tmp_path):
    volume = random_volume((3, 4, 6), seed=10)
    write_slices(tmp_path / "in", volume[None], [None] * 3, name="IM{index}", SeriesNumber=3)
    (out,) = ingest(tmp_path / "in", tmp_path)
    img = out["img"]
    assert img.shape == (6, 4, 3)
    # dcm2niix (v1.0.20260724, checked by hand): the centre voxel ((n - 1) / 2 on each axis)
    # sits at the origin; RAS columns -0.8, -0.5 (no row flip in ours) and +2 mm.
    centre = (img.affine @ [2.5, 1.5, 1.0, 1.0])[:3]
    np.testing.assert_allclose(centre, 0.0, atol=1e-6)
    np.testing.assert_allclose(np.diag(img.affine)[:3], [-0.8, -0.5, 2.0], atol=1e-6)
    assert any("no ImagePositionPatient" in w for w in out["sidecar"]["Warnings"])


def test_uih_grid_diffusion_series_gets_bval_and_bvec(tmp_path):
    tiles = random_volume((2, 3, 4, 5), seed=11).astype(np.uint16)  # volume, tile, rows, cols
    study, series = generate_uid(), generate_uid()
    for v, (bvalue, gradient) in enumerate(((0.0, (0.0, 0.0, 0.0)), (1000.0, (0.0, 1.0, 0.0)))):
        uih_grid_file(
            tmp_path / "in" / f"v{v}.dcm",
            tiles[v],
            (-20.0, -30.0, 40.0),
            diffusion=(bvalue, gradient),
            InstanceNumber=v + 1,
            AcquisitionNumber=v + 1,
            StudyInstanceUID=study,
            SeriesInstanceUID=series,
        )
    (out,) = ingest(tmp_path / "in", tmp_path)
    data = np.asarray(out["img"].dataobj)
    assert data.shape == (5, 4, 3, 2)
    np.testing.assert_array_equal(data[..., 1], tiles[1].transpose(2, 1, 0))
    assert out[".bval"].split() == ["0", "1000"]
    bvec = np.array([line.split() for line in out[".bvec"].splitlines()], dtype=float)
    # Axial: the LPS gradient (0, 1, 0) runs along our j axis (the DICOM column direction).
    np.testing.assert_allclose(bvec[:, 1], [0.0, 1.0, 0.0], atol=1e-6)


def test_diffusion_without_readable_directions_stays_one_series_without_bvec(tmp_path):
    """GE stores b in (0043,1039) and directions in logical axes (not read): the b > 0
    volumes are not mistaken for derived ones, .bval is written and no wrong .bvec."""
    stored = random_volume((2, 3, 4, 5), seed=12)  # slice, volume, rows, columns

    def each(ds, v, z):
        ds.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
        ds.add_new((0x0043, 0x1039), "IS", [1000000000 + (0, 1000, 1000)[v], 0, 0, 0])

    write_slices(
        tmp_path / "in",
        stored.swapaxes(0, 1),
        slice_ipps(2),
        slice_major=True,
        slice_thickness=None,
        each=each,
        SeriesNumber=5,
        Manufacturer="GE MEDICAL SYSTEMS",
    )
    (out,) = ingest(tmp_path / "in", tmp_path)
    assert np.asarray(out["img"].dataobj).shape == (5, 4, 2, 3)
    assert out[".bval"].split() == ["0", "1000", "1000"]
    assert ".bvec" not in out
    assert any("no .bvec" in w for w in out["sidecar"]["Warnings"])
