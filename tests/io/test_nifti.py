"""NIfTI writing: the fast gzip stream and the Fortran-order copy change no byte of the image."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

import medcnn.io.nifti as nifti
from medcnn.io.nifti import fortran_order, write_nifti

AFFINE = np.array(
    [[-0.8, 0.0, 0.1, 90.0], [0.0, 0.8, 0.0, -120.0], [0.0, 0.0, 2.5, -60.0], [0, 0, 0, 1.0]]
)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((70, 45, 33), np.int16),
        ((40, 31, 18, 3), np.float32),
        ((21, 34, 19, 1, 3), np.uint8),
        ((64, 64, 1), np.uint16),
    ],
)
def test_written_image_is_what_nibabel_writes(tmp_path, shape, dtype):
    rng = np.random.default_rng(3)
    data = (rng.normal(0, 800, shape)).astype(dtype)
    ours = tmp_path / "ours.nii.gz"
    write_nifti(ours, data, AFFINE, dtype=None, repetition_time=2.0)
    # The reference: nibabel's own writer, from the same header.
    img = nib.load(ours)
    reference = tmp_path / "nibabel.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE, header=img.header), reference)
    assert gzip.decompress(ours.read_bytes()) == gzip.decompress(reference.read_bytes())
    loaded = np.asanyarray(img.dataobj)
    assert loaded.dtype == dtype and np.array_equal(loaded, data)
    assert np.allclose(img.affine, AFFINE)
    assert img.header.get_qform(coded=True)[1] == 1 and img.header.get_sform(coded=True)[1] == 1


def test_the_same_image_gives_the_same_bytes(tmp_path):
    data = np.arange(30 * 20 * 10, dtype=np.int16).reshape(30, 20, 10)
    write_nifti(tmp_path / "a.nii.gz", data, AFFINE, dtype=None)
    write_nifti(tmp_path / "b.nii.gz", data, AFFINE, dtype=None)
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


def test_fortran_order_keeps_every_value():
    rng = np.random.default_rng(5)
    for shape in ((100, 50, 37), (53, 40, 17, 2), (38, 37, 40, 1, 3)):
        data = rng.integers(-3000, 3000, shape).astype(np.int16)
        out = fortran_order(data)
        assert out.flags.f_contiguous and np.array_equal(out, data)
    small = np.zeros((4, 4, 4))
    assert fortran_order(small) is small


def test_zlib_when_isal_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(nifti, "_gzip", gzip)
    data = np.arange(40 * 30 * 20, dtype=np.float32).reshape(40, 30, 20)
    write_nifti(tmp_path / "z.nii.gz", data, AFFINE)
    assert np.array_equal(nib.load(tmp_path / "z.nii.gz").get_fdata(), data)
