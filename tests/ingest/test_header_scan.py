"""The header pass's fast read (:mod:`medcnn.io.dicom_scan`) gives what pydicom's full read
gives, for every element the header pass uses; files it does not handle go to pydicom."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from medcnn.ingest.dicom_headers import HEADER_KEYWORDS, HEADER_PRIVATE_TAGS, header_tags
from medcnn.io import dicom_frames
from medcnn.io.dicom import read_header
from medcnn.io.dicom_frames import PHILIPS_PRIVATE_FRAME, frames_from_header
from medcnn.io.dicom_scan import scan_header
from medcnn.io.errors import DicomReadError
from medcnn.io.limits import Limits
from tests.io.synthetic import base_dataset

REPO = Path(__file__).resolve().parents[2]
QA = REPO.parent / "shared" / "data" / "dicom_qa"
#: Modules whose code reads the header pass's data set (all of their keywords count).
HEADER_MODULES = (
    "medcnn/io/dicom_frames.py",
    "medcnn/ingest/dicom_headers.py",
    "medcnn/io/limits.py",
)
#: Functions of medcnn/io/dicom.py that the header pass calls.
DICOM_FUNCTIONS = ("read_header", "number_list", "orientation", "pixel_spacing")
#: Not data set elements: where the read stops, and the file meta.
NOT_ELEMENTS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData", "TransferSyntaxUID"}


def _keywords(tree: ast.AST) -> set[str]:
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value
        and tag_for_keyword(node.value) is not None
    }


def test_every_keyword_the_header_pass_reads_is_kept():
    """A keyword added to the header pass's code but not to HEADER_KEYWORDS would read as
    absent on the fast path: this fails first."""
    found = set()
    for name in HEADER_MODULES:
        found |= _keywords(ast.parse((REPO / name).read_text()))
    tree = ast.parse((REPO / "medcnn/io/dicom.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in DICOM_FUNCTIONS:
            found |= _keywords(node)
    missing = sorted(found - set(HEADER_KEYWORDS) - NOT_ELEMENTS)
    assert not missing, f"add to HEADER_KEYWORDS: {missing}"
    assert all(tag_for_keyword(k) is not None for k in HEADER_KEYWORDS)


def test_every_private_tag_the_header_pass_reads_is_kept():
    tree = ast.parse((REPO / "medcnn/io/dicom_frames.py").read_text())
    found = {
        tuple(e.value for e in node.elts)
        for node in ast.walk(tree)
        if isinstance(node, ast.Tuple)
        and len(node.elts) == 2
        and all(isinstance(e, ast.Constant) and isinstance(e.value, int) for e in node.elts)
    }
    # Read only inside PerFrameFunctionalGroupsSequence items, which are kept whole.
    found.discard(PHILIPS_PRIVATE_FRAME)
    assert found <= set(HEADER_PRIVATE_TAGS)
    assert dicom_frames.PHILIPS_SCALE_SLOPE in HEADER_PRIVATE_TAGS


def _summary(ds: Dataset, path: Path) -> dict:
    out = {k: repr(ds.get(k)) for k in HEADER_KEYWORDS}
    for group, element in HEADER_PRIVATE_TAGS:
        out[f"{group:04X},{element:04X}"] = repr(ds.get((group, element)))
    out["frames"] = frames_from_header(ds, path)
    out["syntax"] = str(ds.file_meta.get("TransferSyntaxUID", ""))
    return out


def _same_as_full_read(path: Path) -> bool:
    """Whether the fast read took the file, after checking it reads as the full read."""
    full = read_header(path, Limits())
    fast = read_header(path, Limits(), header_tags())
    assert _summary(fast, path) == _summary(full, path)
    with open(path, "rb") as fh:
        return scan_header(fh, os.fstat(fh.fileno()).st_size, header_tags()) is not None


def _philips_like(**tags) -> Dataset:
    """A header with what the fast read must get right: undefined-length sequences (nested,
    with undefined-length items), private elements and their creators, a character set."""
    ds = base_dataset(
        Manufacturer="Philips Medical Systems",
        SpecificCharacterSet="ISO_IR 100",
        PatientName="Müller^Jörg",
        ImageType=["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"],
        InstanceNumber=3,
        SeriesNumber=501,
        EchoTime=4.6,
        ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        ImagePositionPatient=[-10.0, -20.5, 30.25],
        PixelSpacing=[0.5, 0.8],
        RescaleSlope=2.5,
        RescaleIntercept=-3.0,
        **tags,
    )
    inner = Dataset()
    inner.CodeValue = "Hz"
    inner.CodingSchemeDesignator = "UCUM"
    mapping = Dataset()
    mapping.MeasurementUnitsCodeSequence = DicomSequence([inner])
    mapping.RealWorldValueSlope = 1.0
    ds.RealWorldValueMappingSequence = DicomSequence([mapping])
    ds.RealWorldValueMappingSequence.is_undefined_length = True
    ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(0x0E, "FL", 0.25)
    ds.private_block(0x2005, "Philips MR Imaging DD 001").add_new(0x11, "CS", "M")
    ignored = Dataset()
    ignored.add_new(0x00191001, "LO", "x" * 300)
    deep = Dataset()
    deep.ReferencedSOPInstanceUID = "1.2.3"
    ignored.ReferencedImageSequence = DicomSequence([deep])
    ignored.ReferencedImageSequence.is_undefined_length = True
    ds.ReferencedImageSequence = DicomSequence([ignored, Dataset()])
    ds.ReferencedImageSequence.is_undefined_length = True
    ds.add_new(0x00291010, "OB", bytes(range(256)) * 8)  # a private blob, skipped
    ds.set_pixel_data(np.arange(12, dtype=np.int16).reshape(3, 4), "MONOCHROME2", 16)
    return ds


@pytest.mark.parametrize("syntax", ["explicit", "implicit"])
def test_scan_reads_as_pydicom(tmp_path, syntax):
    ds = _philips_like()
    if syntax == "implicit":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = tmp_path / "a.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert _same_as_full_read(path)
    fast = read_header(path, Limits(), header_tags())
    assert str(fast.PatientName) == "Müller^Jörg"
    assert 0x00291010 not in fast  # skipped, never parsed
    assert float(fast[0x2005, 0x100E].value) == pytest.approx(0.25)


def test_scan_without_pixel_data_and_a_large_header(tmp_path):
    for pixels in (False, True):
        ds = _philips_like()
        ds.add_new(0x00291020, "OB", b"\x01" * 200_000)  # past the first read of 64 KiB
        if not pixels:
            del ds.PixelData
        path = tmp_path / f"b{pixels}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert _same_as_full_read(path)


def test_files_the_scan_leaves_to_pydicom(tmp_path):
    """Big endian, no preamble, truncated: read by pydicom exactly as before."""
    big = _philips_like()
    big.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    del big.PixelData
    path = tmp_path / "big.dcm"
    big.save_as(path, enforce_file_format=True)
    assert not _same_as_full_read(path)
    plain = tmp_path / "plain.dcm"
    _philips_like().save_as(plain, enforce_file_format=True)
    raw = plain.read_bytes()
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(raw[128:])  # no preamble
    with pytest.raises(DicomReadError):
        read_header(bare, Limits())
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(raw[: len(raw) // 3])
    for path in (bare, cut):
        try:
            full = str(read_header(path, Limits()))
        except DicomReadError as exc:
            full = f"error {exc}"
        try:
            fast = str(read_header(path, Limits(), header_tags()))
        except DicomReadError as exc:
            fast = f"error {exc}"
        assert fast == full


def test_truncated_pixels_are_refused_alike(tmp_path):
    path = tmp_path / "t.dcm"
    _philips_like().save_as(path, enforce_file_format=True)
    path.write_bytes(path.read_bytes()[:-6])
    messages = []
    for tags in (None, header_tags()):
        with pytest.raises(DicomReadError) as err:
            read_header(path, Limits(), tags)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "truncated pixel data" in messages[0]


def test_label_key_that_is_not_a_keyword_reads_everything():
    assert header_tags("not a keyword") is None
    assert tag_for_keyword("AccessionNumber") in header_tags("AccessionNumber")


@pytest.mark.realdata
@pytest.mark.skipif(not QA.is_dir(), reason=f"real data absent: {QA}")
@pytest.mark.parametrize(
    "suite,step", [("dcm_qa_ts", 1), ("dcm_qa_enh", 1), ("dcm_qa_nih", 7), ("dcm_qa_philips", 29)]
)
def test_real_headers_read_as_pydicom(suite, step):
    """Every ``step``-th file of each QA suite: the same elements and frames either way."""
    folder = QA / suite / "In"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    files = sorted(p for p in folder.rglob("*") if p.is_file())[::step]
    for path in files:
        try:
            _same_as_full_read(path)
        except DicomReadError:
            with pytest.raises(DicomReadError):
                read_header(path, Limits(), header_tags())


def test_a_deeply_nested_header_goes_to_pydicom(tmp_path):
    """Thousands of nested undefined-length sequences: the scan gives up (pydicom decides)."""
    path = tmp_path / "deep.dcm"
    ds = base_dataset()
    ds.save_as(path, enforce_file_format=True)
    raw = bytearray(path.read_bytes())
    sq = b"\x09\x00\x10\x10SQ\x00\x00\xff\xff\xff\xff"  # (0009,1010) SQ, undefined length
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"  # an item of undefined length
    depth = 5000
    raw += (sq + item) * depth
    path.write_bytes(bytes(raw))
    with open(path, "rb") as fh:
        assert scan_header(fh, os.fstat(fh.fileno()).st_size, header_tags()) is None
    outcomes = []
    for tags in (None, header_tags()):
        try:
            outcomes.append(str(read_header(path, Limits(), tags).get("PatientID")))
        except DicomReadError as exc:
            outcomes.append(f"error {exc}")
    assert outcomes[0] == outcomes[1]
