"""Decode the pixel data of one DICOM file into frames ``(frames, rows, columns[, 3])``."""

from __future__ import annotations

import warnings as pywarnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

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


def as_frames(pixels: np.ndarray, info: FrameInfo) -> np.ndarray:
    """Add the frame axis that pydicom drops for single-frame files."""
    if pixels.ndim == (3 if info.colour else 2):
        pixels = pixels[None]
    if pixels.ndim != (4 if info.colour else 3):
        raise DicomReadError(f"{info.path.name}: unexpected pixel array shape {pixels.shape}")
    return pixels
