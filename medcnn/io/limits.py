"""Declared sizes checked before anything is allocated or decoded.

A hostile or broken file can declare far more pixels than it holds (a 1 KB file claiming
65535 x 65535 pixels, or a million frames); decoders trust those numbers and allocate first.
Every reader here checks the declared size against the bytes present and against
``ingest.max_pixel_bytes`` before it decodes, so such a file costs a header read.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset

from medcnn.io.codecs import DEFLATED, UNCOMPRESSED
from medcnn.io.errors import DicomReadError
from medcnn.io.files import open_regular

PIXEL_DATA_TAG_LE = b"\xe0\x7f\x10\x00"
PIXEL_DATA_TAG_BE = b"\x7f\xe0\x00\x10"
UNDEFINED_LENGTH = 0xFFFFFFFF
#: Transfer syntaxes whose body is deflated: byte counts in the file say nothing then.
DEFLATED_SYNTAXES = frozenset({DEFLATED, "1.2.840.10008.1.2.8.1"})
#: Uncompressed transfer syntaxes: pixel data read as it lies in the file, with no codec that
#: could hang or allocate beyond the declared size (checked against the bytes present).
NATIVE_SYNTAXES = UNCOMPRESSED - {DEFLATED}
#: Smallest encapsulated frame: an item tag and its length.
MIN_FRAGMENT_BYTES = 8


@dataclass(frozen=True)
class Limits:
    """What one file may cost (``ingest.limits`` in the configuration).

    Attributes:
        max_pixel_bytes: largest declared pixel payload of one file (rows x columns x
            frames x samples x bits / 8), in bytes.
        decode_seconds: wall-clock limit for decoding and stacking one series or file.
        decode_memory_mb: address space a decoding worker may add, in MiB.
        isolate: decode in a worker process (the limits above are enforced only then).
    """

    max_pixel_bytes: int = 1 << 30
    decode_seconds: float = 300.0
    decode_memory_mb: int = 8192
    isolate: bool = True

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> Limits:
        """Limits from ``config['ingest']['limits']`` (missing keys take the defaults)."""
        known = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        return cls(**known)


def pixel_bytes_after_header(fh: BinaryIO, file_size: int) -> tuple[int | None, int]:
    """(declared PixelData length or None when undefined, bytes left in the file).

    ``fh`` stands where ``dcmread(..., stop_before_pixels=True)`` left it: at the PixelData
    tag. Returns (None, 0) when no PixelData element follows.
    """
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 8 or head[:4] not in (PIXEL_DATA_TAG_LE, PIXEL_DATA_TAG_BE):
        return None, 0
    order = "<" if head[:4] == PIXEL_DATA_TAG_LE else ">"
    if head[4:6].isalpha() and len(head) == 12:  # explicit VR: OB/OW, two reserved bytes
        length, used = struct.unpack(order + "I", head[8:12])[0], 12
    else:
        length, used = struct.unpack(order + "I", head[4:8])[0], 8
    left = max(0, file_size - start - used)
    return (None if length == UNDEFINED_LENGTH else int(length)), left


def _positive_int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DicomReadError(f"{keyword} {str(value)[:20]!r} is not a number") from None
    return number


def declared_pixel_bytes(ds: Dataset) -> tuple[int, str]:
    """(bytes the header declares, the product in words) for a header with PixelData.

    Raises:
        DicomReadError: a size attribute missing, not a number, zero or negative.
    """
    rows = _positive_int(ds, "Rows")
    columns = _positive_int(ds, "Columns")
    frames = _positive_int(ds, "NumberOfFrames", 1) if ds.get("NumberOfFrames") else 1
    samples = _positive_int(ds, "SamplesPerPixel", 1)
    bits = _positive_int(ds, "BitsAllocated", 16)
    words = f"{rows} x {columns} x {frames} frame(s) x {samples} sample(s) x {bits} bits"
    if min(rows, columns) <= 0:
        raise DicomReadError(f"image size is zero (Rows x Columns = {rows} x {columns})")
    if frames <= 0 or samples <= 0:
        raise DicomReadError(f"NumberOfFrames/SamplesPerPixel not positive ({words})")
    if bits not in (1, 8, 16, 32, 64):
        raise DicomReadError(f"BitsAllocated {bits} is not 1, 8, 16, 32 or 64")
    return math.ceil(rows * columns * frames * samples * bits / 8), words


def check_dicom_size(
    ds: Dataset, syntax: str, length: int | None, left: int, limits: Limits
) -> None:
    """Refuse a header whose declared pixels exceed the limit or the bytes present.

    Args:
        ds: the header (read up to PixelData).
        syntax: TransferSyntaxUID.
        length: PixelData's declared length (None: undefined, i.e. encapsulated).
        left: bytes of the file after the PixelData element header.
        limits: the configured limits.

    Raises:
        DicomReadError: the reason, fit for ``quarantine.tsv``.
    """
    expected, words = declared_pixel_bytes(ds)
    if expected > limits.max_pixel_bytes:
        raise DicomReadError(
            f"declares {expected:,} bytes of pixels ({words}), more than "
            f"ingest.limits.max_pixel_bytes ({limits.max_pixel_bytes:,})"
        )
    if syntax in DEFLATED_SYNTAXES:
        return
    frames = int(ds.get("NumberOfFrames") or 1)
    if length is None:
        if frames * MIN_FRAGMENT_BYTES > left:
            raise DicomReadError(
                f"declares {frames} frames but its compressed pixel data ({left:,} bytes) "
                "cannot hold that many"
            )
        return
    present = min(length, left)
    if present < expected:
        raise DicomReadError(
            f"truncated pixel data: {present:,} bytes present, {expected:,} declared ({words})"
        )
    if present > expected + 1:  # one byte of padding to an even length is allowed
        raise DicomReadError(
            f"PixelData holds {present:,} bytes, more than the {expected:,} declared ({words})"
        )


def check_nifti_header(path: Path, header: Any, shape: tuple[int, ...], limits: Limits) -> None:
    """Refuse a NIfTI whose header declares more voxels than allowed or than the file holds.

    Raises:
        DicomReadError: the reason (NIfTI errors share the DICOM reader's error type).
    """
    if len(shape) < 2 or min(shape) <= 0:
        raise DicomReadError(f"NIfTI shape {shape} is not an image")
    itemsize = header.get_data_dtype().itemsize
    needed = math.prod(int(s) for s in shape) * itemsize
    dims = "x".join(str(s) for s in shape)
    if needed > limits.max_pixel_bytes:
        raise DicomReadError(
            f"NIfTI header declares {dims} voxels of {itemsize} bytes ({needed:,} bytes), more "
            f"than ingest.limits.max_pixel_bytes ({limits.max_pixel_bytes:,})"
        )
    offset = int(header.get_data_offset())
    if path.name.lower().endswith(".gz"):
        size = _gzip_size(path, needed + offset)
        if size is None or needed >= 1 << 32:
            return  # the gzip trailer holds the size modulo 4 GiB only
    else:
        size = os.stat(path).st_size
    if size - offset < needed:
        raise DicomReadError(
            f"truncated NIfTI: header declares {dims} voxels ({needed:,} bytes), the file "
            f"holds {max(0, size - offset):,}"
        )


def _gzip_size(path: Path, needed: int) -> int | None:
    """Uncompressed size of a gzip file, from its trailer (None when unreadable).

    The trailer holds the size of the last member modulo 4 GiB; when it says less than
    ``needed`` the stream is counted (never more than ``needed`` bytes are inflated), so a
    multi-member file is not taken for a truncated one.
    """
    try:
        with open_regular(path) as fh:
            fh.seek(-4, os.SEEK_END)
            size = int(struct.unpack("<I", fh.read(4))[0])
            if size >= needed:
                return size
            fh.seek(0)
            counted = 0
            with gzip.GzipFile(fileobj=fh) as gz:
                while counted < needed:
                    chunk = gz.read(min(1 << 20, needed - counted))
                    if not chunk:
                        break
                    counted += len(chunk)
            return counted
    except (OSError, EOFError, struct.error, zlib.error):
        return None
