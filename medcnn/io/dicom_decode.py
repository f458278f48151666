"""Decode the pixel data of one DICOM file into frames ``(frames, rows, columns[, 3])``."""

from __future__ import annotations

import os
import struct
import warnings as pywarnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from medcnn.io.codecs import load_codecs
from medcnn.io.dicom import (
    WARNING_IS_ERROR_SYNTAXES,
    DicomReadError,
    decoded_pixels,
    looks_like_dicom,
)
from medcnn.io.dicom_frames import FrameInfo
from medcnn.io.files import open_regular


def decode_file(path: Path, header: bool = True) -> tuple[Dataset | None, np.ndarray]:
    """The dataset (when ``header``) and the frames ``(frames, rows, columns[, 3])``.

    Colour comes back as RGB. Without ``header`` only the pixel-related elements are parsed
    (``pydicom.pixels.pixel_array``), which is what most slices of a series need.
    """
    ds = None
    try:
        if header:
            with open_regular(path) as fh, pywarnings.catch_warnings():
                pywarnings.simplefilter("ignore")  # header quirks; decode warnings are kept
                ds = pydicom.dcmread(fh, force=not looks_like_dicom(path))
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                raise DicomReadError(f"{path.name}: no pixel data")
            pixels = decoded_pixels(ds)
        else:
            try:
                with open_regular(path) as fh, pywarnings.catch_warnings():
                    pywarnings.simplefilter("error")  # a warning: decode in full, checked
                    # pydicom 3 takes a path here (a file object raises TypeError)
                    meta = pydicom.filereader.read_file_meta_info(path)
                    syntax = str(meta.get("TransferSyntaxUID", ""))
                    if syntax.startswith(WARNING_IS_ERROR_SYNTAXES):
                        return decode_file(path, header=True)
                    load_codecs(syntax or None)  # where medcnn ingest deferred them
                    fh.seek(0)
                    pixels = pixel_array(fh)
            except DicomReadError:
                raise
            except Exception:  # deflated or unusual files: parse them in full
                return decode_file(path, header=True)
    except DicomReadError as exc:
        if str(exc).startswith(f"{path.name}:"):
            raise
        raise DicomReadError(f"{path.name}: {exc}") from exc
    except Exception as exc:  # pydicom raises many types for truncated/undecodable data
        try:
            meta = pydicom.filereader.read_file_meta_info(path)
            syntax = meta.get("TransferSyntaxUID", "?")
        except Exception:  # the file meta itself is damaged
            syntax = "?"
        name = getattr(syntax, "name", str(syntax))
        raise DicomReadError(
            f"{path.name}: cannot decode pixel data ({name}): {type(exc).__name__}: {exc}"
        ) from exc
    return ds, pixels


#: Native little-endian transfer syntaxes: (UID, explicit VR).
_NATIVE_LE = {"1.2.840.10008.1.2": False, "1.2.840.10008.1.2.1": True}
_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian


def native_frame(path: Path, ref: Dataset, rows: int, columns: int) -> np.ndarray | None:
    """The stored values ``(rows, columns)`` of a single-frame, uncompressed greyscale file,
    read straight from its end without parsing the header; None when the file is not laid
    out so (then :func:`decode_file` parses it).

    ``ref`` is the series' first dataset (transfer syntax and bit layout; the series shares
    them). Native pixel data is the last element of such a file: the element header found
    at ``size - length - 8`` (implicit VR) or ``- 12`` (explicit VR) must be PixelData with
    exactly the length Rows x Columns x BitsAllocated / 8 (padded to even) calls for, so a
    truncated file, a lying length, trailing elements or another layout fall back to the
    full, checked decode. Unused high bits are masked (sign-extended when signed), as
    pydicom does.
    """
    meta = getattr(ref, "file_meta", None)
    explicit = _NATIVE_LE.get(str(getattr(meta, "TransferSyntaxUID", "") or ""))
    if explicit is None or "PixelData" not in ref:
        return None
    try:
        samples = int(ref.get("SamplesPerPixel", 1) or 1)
        frames = int(ref.get("NumberOfFrames", 1) or 1)
        allocated = int(ref.BitsAllocated)
        stored = int(ref.get("BitsStored", allocated) or allocated)
        signed = int(ref.get("PixelRepresentation", 0) or 0) == 1
    except (AttributeError, TypeError, ValueError):
        return None
    if samples != 1 or frames != 1 or allocated not in (8, 16, 32) or not 0 < stored <= allocated:
        return None
    count = rows * columns
    length = count * allocated // 8
    length += length & 1
    head = 12 if explicit else 8
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            offset = size - length - head
            if offset < 132:  # not even room for the preamble and the file meta
                return None
            fh.seek(offset)
            element = fh.read(head)
            if explicit:
                ok = element[:4] == _PIXEL_TAG and element[4:6] in (b"OW", b"OB")
                ok = ok and element[6:8] == b"\0\0"
            else:
                ok = element[:4] == _PIXEL_TAG
            if not ok or struct.unpack("<I", element[-4:])[0] != length:
                return None
            buffer = fh.read(length)
    except OSError:
        return None
    if len(buffer) != length:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    arr = np.frombuffer(buffer, dtype=dtype, count=count).reshape(rows, columns).copy()
    if stored < allocated:
        shift = allocated - stored
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def as_frames(pixels: np.ndarray, info: FrameInfo) -> np.ndarray:
    """Add the frame axis that pydicom drops for single-frame files."""
    if pixels.ndim == (3 if info.colour else 2):
        pixels = pixels[None]
    if pixels.ndim != (4 if info.colour else 3):
        raise DicomReadError(f"{info.path.name}: unexpected pixel array shape {pixels.shape}")
    return pixels
