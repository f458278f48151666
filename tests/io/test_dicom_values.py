"""The cache of pydicom's value conversions: the same values as without it, never shared."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom import hooks as pydicom_hooks
from pydicom.multival import MultiValue

from medcnn.ingest.dicom_headers import header_tags
from medcnn.io import dicom_values
from medcnn.io.dicom import read_header
from tests.io.synthetic import slice_ipps, write_series


@pytest.fixture
def series(tmp_path):
    volume = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    return write_series(tmp_path, volume, slice_ipps(4), PatientName="Doe^Jane", EchoTime="2.50")


def _values(ds) -> dict:
    return {elem.tag: (elem.VR, elem.value) for elem in ds if elem.VR != "SQ"}


def test_installed_by_the_dicom_reader():
    assert pydicom_hooks.hooks.raw_element_value is dicom_values.cached_raw_element_value


def test_cached_reads_equal_uncached_ones(series, monkeypatch):
    tags = header_tags(None)
    dicom_values.clear()
    before = dict(dicom_values.counts)
    cached = [_values(read_header(p, None, tags)) for p in series]
    hits = dicom_values.counts["hits"] - before["hits"]
    assert hits > 10 * (len(series) - 1)  # the later files' shared values come from the cache
    monkeypatch.setattr(pydicom_hooks.hooks, "raw_element_value", dicom_values._default)
    plain = [_values(read_header(p, None, tags)) for p in series]
    assert cached == plain
    for got, want in zip(cached, plain, strict=True):
        for tag, (vr, value) in want.items():
            assert type(got[tag][1]) is type(value), (tag, vr)
            assert str(got[tag][1]) == str(value)  # "2.50" stays "2.50" (DS keeps its text)


def test_a_cached_multivalue_is_a_copy(series):
    dicom_values.clear()
    first = read_header(series[0], None, header_tags(None))
    second = read_header(series[1], None, header_tags(None))
    spacing = second.PixelSpacing
    assert isinstance(spacing, MultiValue)
    spacing[0] = 99.0  # a caller changing one file's value changes no other file's
    third = read_header(series[2], None, header_tags(None))
    assert float(third.PixelSpacing[0]) != 99.0
    assert float(first.PixelSpacing[0]) != 99.0
    assert str(third.EchoTime) == "2.50"
    assert str(third.PatientName) == "Doe^Jane"


def test_a_full_cache_is_emptied(series, monkeypatch):
    monkeypatch.setattr(dicom_values, "MAX_ENTRIES", 5)
    dicom_values.clear()
    for path in series:
        read_header(path, None, header_tags(None))
    assert len(dicom_values._cache) <= 5
    ds = pydicom.dcmread(series[0], stop_before_pixels=True)
    assert ds.Rows == 6
