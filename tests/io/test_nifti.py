"""NIfTI writing: the fast gzip stream and the Fortran-order copy change no byte of the image."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

import medcnn.io.nifti as nifti
from medcnn.io.nifti import write_nifti

AFFINE = np.array(
    [[-0.8, 0.0, 0.1, 90.0], [0.0, 0.8, 0.0, -120.0], [0.0, 0.0, 2.5, -60.0], [0, 0, 0, 1.0]]
)


def _nibabel_writes(monkeypatch, path, data, **kw) -> bytes:
    """The bytes of ``write_nifti`` through nibabel's own writer (the fast path off)."""
    with monkeypatch.context() as patch:
        patch.setattr(nifti, "_write_fortran", lambda *args: False)
        write_nifti(path, data, AFFINE, **kw)
    return gzip.decompress(path.read_bytes())


@pytest.mark.parametrize(
    ("shape", "dtype", "kw"),
    [
        ((70, 45, 33), np.int16, {"dtype": None}),
        ((40, 31, 18, 3), np.float32, {"repetition_time": 2.0}),
        ((21, 34, 19, 1, 3), np.uint8, {"dtype": None}),
        ((64, 64, 1), np.uint16, {"dtype": None}),
        ((100, 50, 37), np.int16, {"dtype": None}),
        ((53, 40, 17, 2), np.int16, {"dtype": None, "repetition_time": 1.5}),
        ((38, 37, 9, 2, 3), np.uint8, {"dtype": None}),
        ((30, 20, 10), np.float64, {"dtype": np.uint8}),
    ],
)
def test_written_image_is_what_nibabel_writes(tmp_path, monkeypatch, shape, dtype, kw):
    data = np.random.default_rng(3).normal(0, 800, shape).astype(dtype)
    if kw.get("dtype") is np.uint8:
        data = np.abs(data) % 200
    ours = tmp_path / "ours.nii.gz"
    write_nifti(ours, data, AFFINE, **kw)
    reference = _nibabel_writes(monkeypatch, tmp_path / "nibabel.nii.gz", data, **kw)
    assert gzip.decompress(ours.read_bytes()) == reference
    img = nib.load(ours)
    expected = (
        data if kw.get("dtype", np.float32) is None else data.astype(kw.get("dtype", np.float32))
    )
    loaded = np.asanyarray(img.dataobj)
    assert loaded.dtype == expected.dtype and np.array_equal(loaded, expected)
    assert np.allclose(img.affine, AFFINE)
    assert img.header.get_qform(coded=True)[1] == 1 and img.header.get_sform(coded=True)[1] == 1


def test_the_same_image_gives_the_same_bytes(tmp_path):
    data = np.arange(30 * 20 * 10, dtype=np.int16).reshape(30, 20, 10)
    write_nifti(tmp_path / "a.nii.gz", data, AFFINE, dtype=None)
    write_nifti(tmp_path / "b.nii.gz", data, AFFINE, dtype=None)
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


def test_zlib_when_isal_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(nifti, "_gzip", gzip)
    data = np.arange(40 * 30 * 20, dtype=np.float32).reshape(40, 30, 20)
    write_nifti(tmp_path / "z.nii.gz", data, AFFINE)
    assert np.array_equal(nib.load(tmp_path / "z.nii.gz").get_fdata(), data)
