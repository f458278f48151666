"""The fast paths of DICOM stacking: native pixel data read straight from the file, and
voxels stacked in their storage type (the same array as the float64 stack + ``compact``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from medcnn.io.dicom_decode import native_frame
from medcnn.io.dicom_frames import frames_from_header
from medcnn.io.dicom_meta import compact
from medcnn.io.dicom_series import AssemblyOptions, _CompactState, assemble_series
from tests.io.synthetic import random_volume, slice_ipps, write_series


def _one(tmp_path: Path, pixels: np.ndarray, bits_stored: int, signed: bool, implicit=False):
    path = write_series(tmp_path, pixels[None].astype(np.int16), slice_ipps(1))[0]
    ds = pydicom.dcmread(path)
    dtype = np.int16 if signed else np.uint16
    ds.PixelRepresentation = int(signed)
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelData = pixels.astype(dtype).tobytes()
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path, pydicom.dcmread(path)


@pytest.mark.parametrize(
    ("bits", "signed", "implicit"),
    [(16, True, False), (12, False, True), (12, True, False), (10, False, False)],
)
def test_native_frame_is_what_pydicom_decodes(tmp_path, bits, signed, implicit):
    rng = np.random.default_rng(7)
    # values with garbage in the unused high bits: masked (or sign-extended) as pydicom does
    raw = rng.integers(-32768 if signed else 0, 32768 if signed else 65536, size=(5, 7))
    path, ds = _one(tmp_path, raw, bits, signed, implicit)
    got = native_frame(path, ds, 5, 7)
    want = ds.pixel_array
    assert got is not None
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_native_frame_declines_truncated_and_padded_files(tmp_path):
    raw = np.arange(35).reshape(5, 7)
    path, ds = _one(tmp_path, raw, 16, True)
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # truncated: the element at the expected place is not PixelData
    assert native_frame(path, ds, 5, 7) is None
    path.write_bytes(data + b"\0\0")  # trailing bytes after the pixel data
    assert native_frame(path, ds, 5, 7) is None
    path.write_bytes(data)
    assert native_frame(path, ds, 5, 8) is None  # a lying size (Rows x Columns)
    np.testing.assert_array_equal(native_frame(path, ds, 5, 7), raw)


@pytest.mark.parametrize(
    "frames",
    [
        [np.array([[0.0, 5.0]]), np.array([[40000.0, 2.0]])],  # int16 -> uint16
        [np.array([[-3.0, 5.0]]), np.array([[40000.0, 2.0]])],  # -> int32
        [np.array([[1.0, 2.0]]), np.array([[0.5, 2.0]])],  # -> float32
        [np.array([[1.0, 2.0]]), np.array([[np.nan, 2.0]])],  # non-finite -> float32
        [np.array([[-1.0, 3e9]])],  # beyond int32 -> float32
        [np.array([[-7.0, 12.0]])],  # int16
    ],
)
def test_compact_state_picks_what_compact_picks(frames):
    state = _CompactState()
    for values in frames:
        dtype = state.update(values)
    assert dtype == compact(np.stack(frames)).dtype


def test_stacked_series_equals_the_float_stack(tmp_path):
    volume = random_volume((6, 9, 11), seed=3)
    paths = write_series(
        tmp_path, volume, slice_ipps(6), RescaleSlope=2.0, RescaleIntercept=-1024.0
    )
    frames = [f for p in paths for f in frames_from_header(pydicom.dcmread(p), p)]
    image = assemble_series(frames, AssemblyOptions())
    expected = compact(np.transpose(volume.astype(np.float64) * 2.0 - 1024.0, (2, 1, 0)))
    assert image.data.dtype == expected.dtype
    assert image.data.flags.f_contiguous
    np.testing.assert_array_equal(image.data, expected)


def test_a_fortran_array_is_written_byte_for_byte_as_a_c_array(tmp_path):
    from medcnn.io.nifti import write_nifti

    data = np.random.default_rng(1).integers(-900, 900, size=(7, 5, 4, 3)).astype(np.int16)
    affine = np.diag([0.5, 0.8, 2.0, 1.0])
    write_nifti(tmp_path / "c.nii.gz", np.ascontiguousarray(data), affine, dtype=None)
    write_nifti(tmp_path / "f.nii.gz", np.asfortranarray(data), affine, dtype=None)
    assert (tmp_path / "c.nii.gz").read_bytes() == (tmp_path / "f.nii.gz").read_bytes()
