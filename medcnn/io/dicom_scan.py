"""A fast header read for the ingest header pass: only the elements grouping needs.

``pydicom.dcmread`` turns every element of a header into Python objects; a Philips or Siemens
header holds 300-600 of them (private blobs, nested private sequences), and the header pass
reads a handful. :func:`scan_header` walks the element headers of a file in one bytes buffer
(tag, VR, length: a few ``struct`` calls each, the values skipped), keeps the byte ranges of
the elements in ``tags`` and of the Specific Character Set, and has pydicom parse just those
bytes (``pydicom.filereader.read_dataset``): the values it returns are pydicom's own, decoded
as a full read decodes them (private creators are kept with their elements, so a private
element's VR is looked up as in a full read).

Only plain files take this path: a 128-byte preamble and ``DICM``, a file meta group in
explicit VR little endian, an implicit or explicit VR little endian data set (every
compressed syntax is explicit little endian), PixelData (or no pixel data) within
:data:`MAX_HEADER_BYTES`, and nothing unusual on the way (a command group, an undefined-length
element of VR UN, an element running past the end, an element of ``tags`` larger than
:data:`MAX_VALUE_BYTES`, or a data set whose first element contradicts the transfer syntax).
For anything else (and on any error) :func:`scan_header` returns None and the caller reads
the file with pydicom as before, so unusual or hostile files are handled (and refused)
exactly as they were.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import BinaryIO

from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.filereader import read_dataset

#: The header region read into memory at most (beyond it: pydicom's own read).
MAX_HEADER_BYTES = 16 << 20
#: An element kept larger than this makes the file take pydicom's read (which defers it).
MAX_VALUE_BYTES = 1 << 20
#: Where pydicom's ``stop_before_pixels`` stops: PixelData, FloatPixelData, DoubleFloatPixelData.
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
SPECIFIC_CHARACTER_SET = 0x00080005
#: PerFrameFunctionalGroupsSequence: an enhanced file's bulk, which the header pass reads.
PER_FRAME = 0x52009230
#: Explicit VRs whose length is 4 bytes (after 2 reserved bytes); the others' is 2 bytes.
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
IMPLICIT_LE = "1.2.840.10008.1.2"
#: Syntaxes left to pydicom: big endian, deflated (and any whose encoding is not explicit LE).
NOT_SCANNED = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")


class _Unusual(Exception):
    """Something this reader leaves to pydicom."""


def _element_header(buf: bytes, pos: int, n: int, implicit: bool) -> tuple[bytes, int, int]:
    """(VR or b"", value length, value start) of the element whose tag is at ``pos`` (not an
    item or delimiter); :class:`_Unusual` for a header cut off by ``n`` or a VR that is not
    two capital letters (e.g. an implicit-VR item in an explicit-VR file, which pydicom
    allows)."""
    if implicit:
        return b"", _U32.unpack_from(buf, pos + 4)[0], pos + 8
    vr = buf[pos + 4 : pos + 6]
    if not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B):
        raise _Unusual  # not explicit VR after all
    if vr in LONG_VRS:
        if pos + 12 > n:
            raise _Unusual
        return vr, _U32.unpack_from(buf, pos + 8)[0], pos + 12
    return vr, _U16.unpack_from(buf, pos + 6)[0], pos + 8


def _element(buf: bytes, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR or b"", value length, value start) of the element at ``pos``."""
    if pos + 8 > len(buf):
        raise _Unusual
    group, number = _TAG.unpack_from(buf, pos)
    tag = group << 16 | number
    if group == 0xFFFE:  # items and delimiters have no VR
        return tag, b"", _U32.unpack_from(buf, pos + 4)[0], pos + 8
    return (tag, *_element_header(buf, pos, len(buf), implicit))


def _skip_items(buf: bytes, pos: int, implicit: bool) -> int:
    """The end of an undefined-length value (items up to the sequence delimiter); the
    elements of undefined-length items walked as the top level is (inlined: Philips' private
    sequences hold most of a header's elements)."""
    n = len(buf)
    u32, unpack_tag = _U32.unpack_from, _TAG.unpack_from
    while True:
        if pos + 8 > n:
            raise _Unusual
        group, number = unpack_tag(buf, pos)
        if group != 0xFFFE or number not in (0xE000, 0xE0DD):
            raise _Unusual
        length = u32(buf, pos + 4)[0]
        pos += 8
        if number == 0xE0DD:  # the sequence delimiter
            return pos
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: its elements up to the item delimiter
            if pos + 8 > n:
                raise _Unusual
            group, number = unpack_tag(buf, pos)
            if group == 0xFFFE:
                if number != 0xE00D:
                    raise _Unusual
                pos += 8
                break
            vr, length, start = _element_header(buf, pos, n, implicit)
            if length == UNDEFINED:
                if vr == b"UN":
                    raise _Unusual  # its items are implicit VR: left to pydicom
                pos = _skip_items(buf, start, implicit)
            else:
                pos = start + length
                if pos > n:
                    raise _Unusual


def _skip_value(buf: bytes, vr: bytes, length: int, start: int, implicit: bool) -> int:
    if length != UNDEFINED:
        end = start + length
        if end > len(buf):
            raise _Unusual
        return end
    if vr == b"UN":
        raise _Unusual  # its items are implicit VR: left to pydicom
    return _skip_items(buf, start, implicit)


def _file_meta(buf: bytes) -> tuple[FileMetaDataset, int]:
    """The file meta group (explicit VR LE) after the preamble, and where the data set begins."""
    pos = 132
    while pos + 8 <= len(buf) and _U16.unpack_from(buf, pos)[0] == 0x0002:
        tag, vr, length, start = _element(buf, pos, False)
        pos = _skip_value(buf, vr, length, start, False)
    meta = read_dataset(BytesIO(buf[132:pos]), False, True)
    return FileMetaDataset(meta), pos


def scan_header(
    fh: BinaryIO, file_size: int, tags: frozenset[int]
) -> tuple[FileDataset, int | None] | None:
    """The elements ``tags`` of the header of an open file, read as pydicom reads them.

    Returns:
        (the data set, the offset of PixelData's element header, or None when the file has
        no pixel data), or None when the file is not one this reader handles: then read it
        with pydicom.
    """
    size = min(file_size, 1 << 16)
    while True:
        fh.seek(0)
        buf = fh.read(size)
        try:
            return _scan(buf, len(buf) == file_size, tags, fh)
        except _Unusual:
            if len(buf) == file_size or size >= MAX_HEADER_BYTES:
                return None
            size = min(file_size, size * 8, MAX_HEADER_BYTES)
        except Exception:  # noqa: BLE001 - whatever else (deep nesting, a kept element
            # pydicom cannot parse): pydicom's full read decides, as it did before
            return None


def _scan(
    buf: bytes, whole: bool, tags: frozenset[int], fh: BinaryIO
) -> tuple[FileDataset, int | None] | None:
    if len(buf) < 140 or buf[128:132] != b"DICM":
        return None
    meta, pos = _file_meta(buf)
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    if not syntax or syntax in NOT_SCANNED:
        return None
    implicit = syntax == IMPLICIT_LE
    if pos + 6 <= len(buf):
        vr = buf[pos + 4 : pos + 6]
        if implicit == (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B):
            return None  # the data set's encoding is not the syntax's: pydicom's heuristics
    kept: list[bytes] = []
    pixels = None
    n = len(buf)
    unpack_tag = _TAG.unpack_from
    while pos < n:  # the top-level elements, inlined (the loop that runs ~500 times a file)
        if pos + 8 > n:
            raise _Unusual  # cut off: read more (or, at the end of the file, pydicom)
        group, number = unpack_tag(buf, pos)
        tag = group << 16 | number
        if group >= 0x7FE0 and tag in PIXEL_TAGS:
            pixels = pos
            break
        if group in (0x0000, 0x0002, 0xFFFE):
            return None  # a command group, file meta or a stray item in the data set
        vr, length, start = _element_header(buf, pos, n, implicit)
        end = start + length
        if length == UNDEFINED or end > n:
            if tag == PER_FRAME and tag in tags:
                return None  # pydicom parses it anyway: walking it first would double that
            end = _skip_value(buf, vr, length, start, implicit)
        if tag in tags or tag == SPECIFIC_CHARACTER_SET:
            if end - start > MAX_VALUE_BYTES:
                return None
            kept.append(buf[pos:end])
        pos = end
    else:
        if not whole:
            raise _Unusual
    dataset = read_dataset(BytesIO(b"".join(kept)), implicit, True)
    # As pydicom.filereader.read_partial makes it (the data set's encoding recorded).
    ds = FileDataset(fh, dataset, buf[:128], meta, implicit, True)
    ds.set_original_encoding(implicit, True, dataset._character_set)
    return ds, pixels
