from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcnn.io.dicom import DicomReadError
from medcnn.io.dicom_series import (
    AssemblyOptions,
    assemble_series,
    compact,
    frames_from_header,
)
from tests.io.synthetic import (
    AXIAL,
    SC_STORAGE,
    base_dataset,
    expected_world,
    random_volume,
    slice_ipps,
    world_of_voxel,
    write_enhanced,
    write_series,
)


def frames_of(paths: list[Path]):
    frames = []
    for path in paths:
        frames += frames_from_header(pydicom.dcmread(path, stop_before_pixels=True), path)
    return frames


def assemble(paths: list[Path], policy: str = "resample"):
    return assemble_series(frames_of(paths), AssemblyOptions(uneven_spacing=policy))


def test_axial_volume_sorted_by_position_not_instance(tmp_path):
    volume = random_volume((4, 3, 5), seed=1)  # slices, rows, columns
    ipps = slice_ipps(4, spacing=2.0)
    paths = write_series(tmp_path, volume, ipps, instance_order=[3, 1, 4, 2])
    image = assemble(paths)
    assert image.data.shape == (5, 3, 4)  # (columns, rows, slices)
    assert image.data.dtype == np.int16
    # voxel (i, j, k) is column i, row j of the k-th slice along the normal.
    np.testing.assert_array_equal(image.data, volume.transpose(2, 1, 0))
    expected = np.array([[-0.8, 0, 0, 10], [0, -0.5, 0, 20], [0, 0, 2, 30], [0, 0, 0, 1]])
    np.testing.assert_allclose(image.affine, expected, atol=1e-6)
    assert image.warnings == []
    assert image.meta["NumberOfSlices"] == 4 and image.meta["SliceStep"] == pytest.approx(2)


def test_oblique_volume_places_every_voxel_where_dicom_says(tmp_path):
    a, b = np.radians(20.0), np.radians(35.0)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    iop = [*row, *col]
    ipps = slice_ipps(3, spacing=3.0, origin=(5.0, -7.0, 11.0), iop=iop)
    paths = write_series(tmp_path, random_volume((3, 4, 6), 2), ipps[::-1], iop=iop)
    image = assemble(paths)
    for i, j, k in [(0, 0, 0), (5, 3, 2), (2, 1, 1)]:
        np.testing.assert_allclose(
            world_of_voxel(image.affine, (i, j, k)),
            expected_world(ipps[k], iop, (0.5, 0.8), i, j),
            atol=1e-4,
        )


def test_missing_slice_resampled_rejected_or_kept(tmp_path):
    volume = np.stack([np.full((2, 2), 100 * k, np.int16) for k in range(5)])
    ipps = slice_ipps(5, spacing=2.0)
    keep = [0, 1, 3, 4]  # slice 2 is missing
    paths = write_series(tmp_path, volume[keep], [ipps[k] for k in keep])

    image = assemble(paths, "resample")
    assert image.data.shape == (2, 2, 5)
    np.testing.assert_allclose(image.data[0, 0], [0, 100, 200, 300, 400])
    assert image.meta["MissingSlices"] == 1 and image.meta["Resampled"] is True
    assert "1 missing slice" in image.warnings[0]
    np.testing.assert_allclose(image.affine[2, 2], 2.0)

    with pytest.raises(DicomReadError, match="missing slice"):
        assemble(paths, "reject")

    kept = assemble(paths, "keep")
    assert kept.data.shape == (2, 2, 4) and "kept as acquired" in kept.warnings[0]


def test_uneven_spacing_is_reported(tmp_path):
    positions = [0.0, 2.0, 4.0, 7.0]
    ipps = [np.array([0.0, 0.0, z]) for z in positions]
    paths = write_series(tmp_path, random_volume((4, 2, 2), 3), ipps)
    image = assemble(paths, "keep")
    assert image.meta["UnevenSpacing"] is True and image.meta["MissingSlices"] == 0
    assert image.meta["SliceGaps"] == [2.0, 3.0]
    assert "uneven slice spacing" in image.warnings[0]


def test_gantry_tilt_gives_a_sheared_affine(tmp_path):
    tilt = np.radians(12.0)
    shift = (0.0, 2.0 * np.tan(tilt), 0.0)  # each slice moves along y (LPS) as z advances
    ipps = slice_ipps(4, spacing=2.0, shift_per_slice=shift)
    paths = write_series(tmp_path, random_volume((4, 3, 3), 4), ipps)
    image = assemble(paths)
    assert image.meta["GantryTiltDegrees"] == pytest.approx(12.0, abs=1e-3)
    assert any("gantry tilt" in w for w in image.warnings)
    for k in range(4):
        np.testing.assert_allclose(
            world_of_voxel(image.affine, (2, 1, k)),
            expected_world(ipps[k], AXIAL, (0.5, 0.8), 2, 1),
            atol=1e-4,
        )


def test_time_series_from_repeated_positions(tmp_path):
    volume = random_volume((6, 2, 3), 5)
    ipps = slice_ipps(3) * 2  # 3 positions, acquired twice
    paths = write_series(
        tmp_path, volume, ipps, AcquisitionNumber=1, instance_order=[1, 2, 3, 4, 5, 6]
    )
    image = assemble(paths)
    assert image.data.shape == (3, 2, 3, 2)
    np.testing.assert_array_equal(image.data[..., 0], volume[:3].transpose(2, 1, 0))
    np.testing.assert_array_equal(image.data[..., 1], volume[3:].transpose(2, 1, 0))


def test_enhanced_multiframe_uses_per_frame_groups(tmp_path):
    volume = random_volume((3, 4, 5), 6).astype(np.uint16)
    ipps = slice_ipps(3, spacing=1.5)
    # Frames stored in reverse spatial order, each with its own rescale slope.
    path = write_enhanced(tmp_path / "enh.dcm", volume[::-1], ipps[::-1], slopes=[1, 2, 3])
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    frames = frames_from_header(ds, path)
    assert len(frames) == 3 and frames[0].frame == 0 and frames[2].slope == 3
    image = assemble_series(frames, AssemblyOptions())
    slopes = np.array([3, 2, 1])  # after sorting along the normal
    expected = volume.astype(float) * slopes[:, None, None]
    np.testing.assert_array_equal(image.data, expected.transpose(2, 1, 0))
    np.testing.assert_allclose(image.affine[:3, 2], [0, 0, 1.5])
    assert image.meta["EnhancedMultiFrame"] is True


def test_rgb_secondary_capture(tmp_path):
    rgb = np.random.default_rng(7).integers(0, 256, size=(4, 6, 3)).astype(np.uint8)
    ds = base_dataset(SC_STORAGE, modality="OT")
    ds.set_pixel_data(rgb, "RGB", 8)
    path = tmp_path / "rgb.dcm"
    ds.save_as(path, enforce_file_format=True)
    image = assemble([path])
    assert image.data.shape == (6, 4, 1, 1, 3) and image.data.dtype == np.uint8
    np.testing.assert_array_equal(image.data[:, :, 0, 0], rgb.transpose(1, 0, 2))


def test_ybr_full_422_becomes_rgb():
    path = Path(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    image = assemble([path])
    reference = pydicom.dcmread(path).pixel_array  # pydicom converts YBR to RGB
    assert image.meta["PhotometricInterpretation"] == "RGB"
    np.testing.assert_array_equal(image.data[:, :, 0, 0], reference.transpose(1, 0, 2))


def test_monochrome1_volume_is_inverted(tmp_path):
    ds = base_dataset(ImagePositionPatient=[0, 0, 0], ImageOrientationPatient=list(AXIAL))
    pixels = np.array([[0, 100], [4000, 4095]], dtype=np.uint16)
    ds.set_pixel_data(pixels, "MONOCHROME1", 12)
    path = tmp_path / "m1.dcm"
    ds.save_as(path, enforce_file_format=True)
    image = assemble([path])
    np.testing.assert_array_equal(image.data[:, :, 0].T, 4095 - pixels)


# --- transfer syntaxes --------------------------------------------------------------------

MR_SMALL_VARIANTS = [
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
]


@pytest.mark.parametrize("name", MR_SMALL_VARIANTS)
def test_bundled_transfer_syntaxes_match_the_uncompressed_original(name):
    original = assemble([Path(get_testdata_file("MR_small.dcm"))])
    variant = assemble([Path(get_testdata_file(name))])
    np.testing.assert_array_equal(variant.data, original.data)
    np.testing.assert_allclose(variant.affine, original.affine)


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline (process 1), YBR_FULL_422
        "JPGExtended.dcm",  # JPEG extended (process 2/4), 12 bit
        "image_dfl.dcm",  # deflated explicit VR little endian
        "JPEG2000.dcm",
        "SC_rgb_rle.dcm",
    ],
)
def test_bundled_compressed_files_decode(name):
    path = Path(get_testdata_file(name))
    ds = pydicom.dcmread(path)
    image = assemble([path])
    assert image.data.shape[:2] == (ds.Columns, ds.Rows)
    reference = ds.pixel_array
    if reference.ndim == 2:
        expected = reference.T.astype(float) * float(ds.get("RescaleSlope", 1) or 1) + float(
            ds.get("RescaleIntercept", 0) or 0
        )
        if ds.PhotometricInterpretation == "MONOCHROME1":
            return  # inversion is tested elsewhere
        np.testing.assert_allclose(image.data[:, :, 0], expected)
    else:
        np.testing.assert_array_equal(image.data[:, :, 0, 0], reference.transpose(1, 0, 2))


@pytest.mark.parametrize(
    "syntax, module",
    [
        ("1.2.840.10008.1.2.5", None),  # RLE lossless, pydicom's own encoder
        ("1.2.840.10008.1.2.4.80", "jpeg_ls"),  # JPEG-LS lossless via pyjpegls
        ("1.2.840.10008.1.2.4.90", "openjpeg"),  # JPEG 2000 lossless via pylibjpeg-openjpeg
    ],
)
def test_compressed_series_decode_to_the_same_voxels(tmp_path, syntax, module):
    if module:
        pytest.importorskip(module)
    volume = random_volume((3, 32, 32), 8)  # OpenJPEG needs >= 32 px for its 6 levels
    ipps = slice_ipps(3)
    plain = write_series(tmp_path / "plain", volume, ipps)
    packed = []
    for path in plain:
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        out = tmp_path / "packed" / path.name
        out.parent.mkdir(exist_ok=True)
        ds.save_as(out)
        packed.append(out)
    assert str(pydicom.dcmread(packed[0]).file_meta.TransferSyntaxUID) == syntax
    np.testing.assert_array_equal(assemble(packed).data, assemble(plain).data)


def test_undecodable_pixel_data_raises_with_the_transfer_syntax(tmp_path):
    path = write_series(tmp_path, random_volume((1, 8, 8), 9), slice_ipps(1))[0]
    ds = pydicom.dcmread(path)
    ds.compress("1.2.840.10008.1.2.5")
    ds.PixelData = ds.PixelData[:40]  # a truncated RLE fragment
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(DicomReadError, match="cannot decode pixel data"):
        assemble([tmp_path / "bad.dcm"])


def test_a_file_no_installed_codec_decodes_raises():
    # pydicom's JPEG-lossy.dcm has a malformed 12-bit scan that libjpeg, GDCM and Pillow
    # all refuse: ingest must turn that into a quarantine reason, not a crash.
    with pytest.raises(DicomReadError, match="cannot decode pixel data .*JPEG Extended"):
        assemble([Path(get_testdata_file("JPEG-lossy.dcm"))])


def test_compact_keeps_exact_values():
    assert compact(np.array([1.0, -2.0])).dtype == np.int16
    assert compact(np.array([1.0, 40000.0])).dtype == np.uint16
    assert compact(np.array([0.5])).dtype == np.float32
