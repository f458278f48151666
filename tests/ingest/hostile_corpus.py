"""A cohort of good scans and a corpus of hostile ones, written at test time (fixed seeds).

:func:`write_good` writes four patients (two CT series, two radiographs) and a NIfTI case;
:func:`write_hostile` plants one file (or link, FIFO, socket, DICOMDIR) per attack class in
its own folder and returns what ingest must make of each: the fate in ``files.tsv`` and a
piece of its reason. Every hostile DICOM also carries the synthetic patient's identifiers,
so the same corpus serves the identifier checks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, generate_uid

from medcnn.io.scrub import shown_path
from tests.io.synthetic import (
    ACCESSION,
    PATIENT_ID,
    PATIENT_NAME,
    STUDY_DATE,
    base_dataset,
    random_volume,
    slice_ipps,
    write_series,
)

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Identifiers planted in file and folder names of the hostile corpus (never in outputs).
NAME_IN_PATH = "Smithson_MRN4417ZQXJ"
#: Numeric attributes that the corpus fills with text.
NUMERIC_TEXT = frozenset(
    {
        "WindowCenter",
        "KVP",
        "NumberOfFrames",
        "PixelSpacing",
        "ImagePositionPatient",
        "SliceThickness",
        "RescaleSlope",
    }
)


@dataclass(frozen=True)
class Case:
    """One hostile input: its path below the input folder (as ``show_paths`` shows it), the
    fate ingest must give it, and a piece of the reason (or detail)."""

    name: str
    path: str
    fate: str
    reason: str = ""


@contextlib.contextmanager
def _no_validation() -> Iterator[None]:
    """Let pydicom write invalid values (text in numeric tags), as broken exports do."""
    settings = pydicom.config.settings
    before = settings.writing_validation_mode, settings.reading_validation_mode
    settings.writing_validation_mode = pydicom.config.IGNORE
    settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        settings.writing_validation_mode, settings.reading_validation_mode = before


def _raw(ds: Dataset, keyword: str, text: str) -> None:
    """Put ``text`` into a numeric element as raw bytes (pydicom would refuse the value)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    vr = pydicom.datadict.dictionary_VR(tag)
    value = text.encode() + (b" " if len(text) % 2 else b"")
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def radiograph(path: Path, patient: str, seed: int = 0, **tags) -> Path:
    """A 24 x 20 DX (MONOCHROME2, 12 bits); a text value for a numeric tag is written raw."""
    pixels = np.random.default_rng(seed).integers(0, 4000, (24, 20)).astype(np.uint16)
    raw = {k: v for k, v in tags.items() if isinstance(v, str) and k in NUMERIC_TEXT}
    tags = {k: v for k, v in tags.items() if k not in raw}
    ds = base_dataset(DX_STORAGE, "DX", PatientID=patient, PixelSpacing=[0.2, 0.2])
    ds.set_pixel_data(pixels, "MONOCHROME2", 12)
    for key, value in tags.items():
        setattr(ds, key, value)  # after the pixels: may contradict them on purpose
    for key, value in raw.items():
        _raw(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _no_validation():
        ds.save_as(path, enforce_file_format=True)
    return path


def ct_series(folder: Path, patient: str, seed: int = 0, **tags) -> list[Path]:
    """A 4-slice 8 x 6 CT-like series (MR storage class of the synthetic helpers); a text
    value for a numeric tag is written raw."""
    raw = {k: v for k, v in tags.items() if isinstance(v, str) and k in NUMERIC_TEXT}
    tags = {k: v for k, v in tags.items() if k not in raw}
    with _no_validation():
        paths = write_series(
            folder, random_volume((4, 8, 6), seed=seed), slice_ipps(4), PatientID=patient, **tags
        )
        for path in paths if raw else []:
            ds = pydicom.dcmread(path)
            for key, value in raw.items():
                _raw(ds, key, value)
            ds.save_as(path)
    return paths


def write_good(root: Path) -> list[str]:
    """The good cohort below ``root``; returns the subjects' original identifiers."""
    ct_series(root / "good" / "ct1", "GOOD0001", seed=1)
    ct_series(root / "good" / "ct2", "GOOD0002", seed=2)
    radiograph(root / "good" / "dx" / "IM0001.dcm", "GOOD0003", seed=3)
    radiograph(root / "good" / "dx" / "IM0002.dcm", "GOOD0004", seed=4)
    case = root / "case01"
    case.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(5).normal(size=(6, 5, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), case / "T1.nii.gz")
    return ["GOOD0001", "GOOD0002", "GOOD0003", "GOOD0004", "case01"]


def _compressed(path: Path, syntax: str, patient: str, rows: int = 64, **after) -> Path:
    pixels = np.random.default_rng(7).integers(0, 4000, (rows, rows)).astype(np.uint16)
    ds = base_dataset(CT_STORAGE, "OT", PatientID=patient)
    ds.set_pixel_data(pixels, "MONOCHROME2", 12)
    plugin = "pylibjpeg" if syntax == JPEG2000Lossless else "pyjpegls"
    ds.compress(syntax, encoding_plugin=plugin)
    for key, value in after.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _no_validation():
        ds.save_as(path, enforce_file_format=True)
    return path


def _flip(path: Path, start: int, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in range(start, start + count):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR declares ``width`` x ``height`` (valid CRC), with a tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """A NIfTI whose sform is ``affine`` written as is (NaN and infinities included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.eye(4))
    header = img.header
    header["sform_code"], header["qform_code"] = 1, 0
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[0], affine[1], affine[2]
    nib.save(nib.Nifti1Image(data, None, header), path)
    return path


def _dicomdir(folder: Path, refs: list[list[str] | str]) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    records = []
    for ref in refs:
        record = Dataset()
        record.DirectoryRecordType = "IMAGE"
        record.ReferencedFileID = ref
        records.append(record)
    ds.DirectoryRecordSequence = DicomSequence(records)
    folder.mkdir(parents=True, exist_ok=True)
    with _no_validation():
        ds.save_as(folder / "DICOMDIR", enforce_file_format=True)


def write_hostile(root: Path, outside: Path) -> list[Case]:
    """Plant the hostile corpus below ``root/h`` (and a few targets in ``outside``)."""
    h = root / "h"
    cases: list[Case] = []

    def add(name: str, path: Path, fate: str, reason: str = "") -> None:
        shown = shown_path(path, [root], b"", show=True)
        cases.append(Case(name, shown, fate, reason))

    # Text in numeric tags, degenerate orientation: converted (the value is ignored).
    add(
        "window centre text",
        radiograph(h / "wc" / "IM1.dcm", "HOST01", WindowCenter="abc"),
        "converted",
    )
    for path in ct_series(h / "kvp", "HOST02", seed=8, KVP="abc")[:1]:
        add("KVP text (CT series)", path, "converted")
    add(
        "PixelSpacing and RescaleSlope text (radiograph)",
        radiograph(h / "pstext" / "IM1.dcm", "HOST27", PixelSpacing="a\\b", RescaleSlope="x"),
        "converted",
    )
    for path in ct_series(
        h / "ipptext", "HOST28", seed=15, ImagePositionPatient="nan\\nan\\nan", SliceThickness="?"
    )[:1]:
        add("ImagePositionPatient NaN, SliceThickness text (CT series)", path, "converted")
    zeros = [0.0] * 6
    for path in ct_series(h / "iopct", "HOST03", seed=9, iop=zeros)[:1]:
        add("IOP all zeros (CT series)", path, "converted")
    add(
        "IOP all zeros (radiograph)",
        radiograph(h / "iopdx" / "IM1.dcm", "HOST04", ImageOrientationPatient=zeros),
        "converted",
    )
    # NIfTI: NaN/inf affine refused; 2D kept as one slice; NaN voxels kept.
    nan = np.diag([1.0, 1.0, 1.0, 1.0])
    nan[0, 3] = np.nan
    add(
        "NIfTI NaN affine",
        _nifti(h / "niinan" / "a.nii.gz", np.zeros((4, 4, 3), np.int16), nan),
        "quarantined",
        "NaN or infinite",
    )
    inf = np.diag([1.0, np.inf, 1.0, 1.0])
    add(
        "NIfTI infinite affine",
        _nifti(h / "niinf" / "a.nii.gz", np.zeros((4, 4, 3), np.int16), inf),
        "quarantined",
        "NaN or infinite",
    )
    add(
        "2D NIfTI",
        _nifti(h / "nii2d" / "a.nii.gz", np.ones((5, 4), np.int16), np.eye(4)),
        "converted",
    )
    voxels = np.full((4, 4, 3), np.nan, np.float32)
    add("NIfTI NaN voxels", _nifti(h / "niivox" / "a.nii.gz", voxels, np.eye(4)), "converted")
    huge = h / "niihuge" / "a.nii"
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    huge.parent.mkdir(parents=True)
    nib.save(img, huge)
    raw = bytearray(huge.read_bytes())
    raw[40:56] = struct.pack("<8h", 3, 20000, 20000, 20000, 1, 1, 1, 1)
    huge.write_bytes(bytes(raw))
    add("NIfTI header 20000^3", huge, "quarantined", "max_pixel_bytes")
    gz = _nifti(h / "niitrunc" / "a.nii.gz", np.ones((30, 30, 30), np.float32), np.eye(4))
    gz.write_bytes(gz.read_bytes()[:200])
    add("truncated NIfTI", gz, "quarantined", "NIfTI")
    # A file name that is not UTF-8, one with a newline: converted, tables intact.
    bad_name = Path(os.fsdecode(bytes(h / "names")) + "/" + os.fsdecode(b"\xff\xfeIM.dcm"))
    add("non-UTF-8 file name", radiograph(bad_name, "HOST05"), "converted")
    add("newline in file name", radiograph(h / "names" / "a\nb.dcm", "HOST06"), "converted")
    # Things that are not regular files, links that lead away or nowhere.
    (h / "special").mkdir(parents=True)
    os.mkfifo(h / "special" / "fifo.dcm")
    add("FIFO named .dcm", h / "special" / "fifo.dcm", "skipped", "FIFO")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(h / "special" / "sock.dcm"))
    sock.close()
    add("socket", h / "special" / "sock.dcm", "skipped", "socket")
    os.symlink("/dev/zero", h / "special" / "zero.dcm")
    add("symlink to /dev/zero", h / "special" / "zero.dcm", "skipped", "outside the inputs")
    os.symlink("loop_b.dcm", h / "special" / "loop_a.dcm")
    os.symlink("loop_a.dcm", h / "special" / "loop_b.dcm")
    add("symlink loop", h / "special" / "loop_a.dcm", "skipped", "symlink loop")
    add("symlink loop (other end)", h / "special" / "loop_b.dcm", "skipped", "symlink loop")
    os.symlink("missing.dcm", h / "special" / "dangling.dcm")
    add("dangling symlink", h / "special" / "dangling.dcm", "skipped", "dangling")
    stolen = radiograph(outside / "other_patient.dcm", "OUTSIDE01")
    os.symlink(stolen, h / "special" / "outside.dcm")
    add("symlink to a DICOM outside", h / "special" / "outside.dcm", "skipped", "outside")
    os.symlink("..", h / "special" / "up")
    add("symlink to a parent folder", h / "special" / "up", "skipped", "already read")
    os.symlink(root / "good" / "dx" / "IM0001.dcm", h / "special" / "alias.dcm")
    add("second path to a good file", h / "special" / "alias.dcm", "skipped", "another path")
    add("hidden file", radiograph(h / "hidden" / ".IM1.dcm", "HOST07"), "skipped", "hidden file")
    radiograph(h / "hidden" / ".cache" / "IM1.dcm", "HOST08")
    add("hidden folder", h / "hidden" / ".cache", "skipped", "hidden folder")
    # DICOMDIR entries that climb out, or point at an absolute path.
    radiograph(outside / "escape" / "IM1.dcm", "OUTSIDE02")
    inside = radiograph(h / "dicomdir" / "IMG" / "IM1.dcm", "HOST09")
    _dicomdir(
        h / "dicomdir",
        [
            ["..", "..", "..", outside.name, "escape", "IM1.dcm"],
            str(outside / "escape" / "IM1.dcm"),
            ["IMG", "IM1.dcm"],
        ],
    )
    add("DICOMDIR entry inside", inside, "converted")
    add(
        "DICOMDIR (index, two entries outside)",
        h / "dicomdir" / "DICOMDIR",
        "skipped",
        "DICOMDIR entry points outside",
    )
    # Declared sizes that do not match the bytes, or exceed the limit.
    add(
        "J2K declaring 65535 x 65535",
        _compressed(
            h / "j2khuge" / "IM1.dcm", JPEG2000Lossless, "HOST10", Rows=65535, Columns=65535
        ),
        "quarantined",
        "max_pixel_bytes",
    )
    add(
        "J2K declaring a million frames",
        _compressed(
            h / "j2kframes" / "IM1.dcm", JPEG2000Lossless, "HOST11", NumberOfFrames=1_000_000
        ),
        "quarantined",
        "max_pixel_bytes",
    )
    add(
        "J2K declaring 20000 frames (under the limit)",
        _compressed(
            h / "j2kframes2" / "IM1.dcm", JPEG2000Lossless, "HOST25", NumberOfFrames=20_000
        ),
        "quarantined",
        "cannot hold that many",
    )
    add(
        "native declaring a million frames",
        radiograph(h / "frames" / "IM1.dcm", "HOST12", NumberOfFrames=1_000_000),
        "quarantined",
        "truncated pixel data",
    )
    double = radiograph(h / "double" / "IM1.dcm", "HOST13")
    ds = pydicom.dcmread(double)
    ds.PixelData = ds.PixelData * 2
    ds.save_as(double)
    add("PixelData twice too long", double, "quarantined", "more than the")
    add(
        "Rows = 0",
        radiograph(h / "rows0" / "IM1.dcm", "HOST14", Rows=0),
        "quarantined",
        "image size is zero",
    )
    add(
        "NumberOfFrames text",
        radiograph(h / "framestext" / "IM1.dcm", "HOST15", NumberOfFrames="abc"),
        "quarantined",
        "not a number",
    )
    add(
        "BitsAllocated 12",
        radiograph(h / "bits12" / "IM1.dcm", "HOST16", BitsAllocated=12),
        "quarantined",
        "BitsAllocated",
    )
    trunc = radiograph(h / "trunc" / "IM1.dcm", "HOST17")
    trunc.write_bytes(trunc.read_bytes()[:-300])
    add("truncated native pixels", trunc, "quarantined", "truncated pixel data")
    # Damaged compressed streams.
    flipped = _compressed(h / "j2kflip" / "IM1.dcm", JPEG2000Lossless, "HOST18", rows=64)
    _flip(flipped, len(flipped.read_bytes()) // 2)
    # Known limit: OpenJPEG (every J2K plugin here uses it) decodes a stream damaged in its
    # entropy-coded data without an error or a warning, and a lossless J2K stream carries
    # no checksum: undetectable. Its fate is recorded here so a change shows up.
    add("J2K bytes flipped mid-stream", flipped, "converted")
    jls = _compressed(h / "jlsflip" / "IM1.dcm", JPEGLSLossless, "HOST19", rows=64)
    _flip(jls, len(jls.read_bytes()) // 2)
    add("JPEG-LS bytes flipped mid-stream", jls, "quarantined", "JPEG-LS")
    # Not DICOM at all, or nothing.
    (h / "junk").mkdir(parents=True)
    (h / "junk" / "empty.dcm").write_bytes(b"")
    add("empty .dcm", h / "junk" / "empty.dcm", "quarantined", "DICOM")
    rng = np.random.default_rng(11)
    (h / "junk" / "random.dcm").write_bytes(rng.bytes(4096))
    add("random bytes .dcm", h / "junk" / "random.dcm", "quarantined", "DICOM")
    (h / "junk" / "notes.png").write_text("not an image")
    add("text named .png", h / "junk" / "notes.png", "quarantined", "not a readable image")
    _png_header(h / "junk" / "bomb.png", 100_000, 100_000)
    add(
        "PNG declaring 100000 x 100000",
        h / "junk" / "bomb.png",
        "quarantined",
        "decompression bomb",
    )
    _png_header(h / "junk" / "big.png", 12_000, 12_000)
    add(
        "PNG declaring 12000 x 12000 with 64 bytes of data",
        h / "junk" / "big.png",
        "quarantined",
        "not a readable image",
    )
    (h / "junk" / "README.txt").write_text("export notes " * 20)
    add("text file", h / "junk" / "README.txt", "skipped", "not a scan file")
    # Duplicates, words, content.
    dup = radiograph(h / "dup" / "IM1.dcm", "HOST20", seed=12)
    (h / "dup" / "IM2.dcm").write_bytes(dup.read_bytes())
    add(
        "duplicate SOPInstanceUID", h / "dup" / "IM2.dcm", "quarantined", "duplicate SOPInstanceUID"
    )
    add(
        "radiograph 'CHEST PA ROI'",
        radiograph(h / "roi" / "IM1.dcm", "HOST21", SeriesDescription="CHEST PA ROI"),
        "converted",
    )
    for path in ct_series(h / "ctroi", "HOST22", seed=13, SeriesDescription="ROI")[:1]:
        add("CT series named 'ROI' with image content", path, "converted")
    # Identifiers in free text: converted, the text scrubbed.
    for path in ct_series(
        h / "phitext",
        "HOST26",
        seed=14,
        SeriesDescription=f"T2 {PATIENT_NAME.replace('^', ' ')} {STUDY_DATE} {PATIENT_ID}",
        ProtocolName=f"ZQXJ protocol 2019-06-07 {ACCESSION}",
        StudyDescription="HEAD Jane Doe 07.06.2019",
    )[:1]:
        add("identifiers in SeriesDescription/ProtocolName", path, "converted")
    # Identifiers in names: converted, shown only as pseudonyms.
    add(
        "patient name in folder and file name",
        radiograph(h / NAME_IN_PATH / f"{NAME_IN_PATH}_20190607.dcm", "HOST23"),
        "converted",
    )
    return cases
