"""Read NIfTI inputs; write NIfTI images and their JSON sidecars."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from medcnn.io.errors import DicomReadError
from medcnn.io.files import open_regular
from medcnn.io.limits import Limits, check_nifti_header

try:  # ISA-L's deflate: several times zlib's speed at a similar size
    from isal import igzip as _gzip
except ImportError:  # no wheel for this platform: the standard library's zlib
    import gzip as _gzip

if TYPE_CHECKING:
    import nibabel as nib

# nibabel (~40 ms to import, scipy with it) is imported where an image is read or written:
# a re-run of ingest over unchanged scans writes none and does not pay for it (ingest's
# workers import it before they fork: ``NIBABEL``).
NIBABEL = "nibabel"

#: Compression level of written ``.nii.gz`` files (isal: 0-3; zlib: 1-9). Level 1 of ISA-L
#: packs CT and MR about as tightly as zlib's default 6, several times faster (measured in
#: ``bench/ingest_vs_dcm2niix.py``).
GZIP_LEVEL = 1


class NiftiReadError(DicomReadError):
    """A NIfTI input that cannot be read; the message is fit for ``quarantine.tsv``."""


def write_nifti(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray,
    dtype: DTypeLike | None = np.float32,
    repetition_time: float | None = None,
) -> None:
    """Write ``data`` (NIfTI axis order) with the same qform and sform.

    Written to a temporary name and renamed, so an interrupted run never leaves a truncated
    image that a later run would take for finished. The header carries nothing but geometry
    and units: no description, no auxiliary file, no extensions (de-identification).

    Args:
        path: the ``.nii.gz`` to write.
        data: voxels ``(i, j, k)``, ``(i, j, k, t)``, or ``(i, j, k, t, 3)`` for RGB (stored
            with the NIfTI ``vector`` intent).
        affine: 4x4 voxel-to-RAS+ in mm. A sheared affine (gantry tilt) is kept exactly in
            the sform; the qform, which cannot hold shear, gets the closest rigid one.
        dtype: storage type; None keeps ``data.dtype``.
        repetition_time: seconds between volumes of a time series (pixdim[4]).
    """
    import nibabel as nib
    from nibabel.fileholders import FileHolder

    array = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)  # scanner anatomical
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if array.ndim == 5:
        img.header.set_intent("vector")
    if array.ndim >= 4 and repetition_time:
        zooms = list(img.header.get_zooms())
        zooms[3] = float(repetition_time)
        img.header.set_zooms(zooms)
    path.parent.mkdir(parents=True, exist_ok=True)
    compressed = path.name.endswith(".gz")
    tmp = path.with_name(path.name + (".part.nii.gz" if compressed else ".part.nii"))
    if compressed:
        # nibabel writes the header and the voxels into the fast gzip stream; no name and
        # mtime 0 in the gzip header, so the same image gives the same bytes in every run.
        with (
            open(tmp, "wb") as raw,
            _gzip.GzipFile("", "wb", GZIP_LEVEL, fileobj=raw, mtime=0) as fh,
        ):
            if not _write_fortran(img, array, fh):
                holder = FileHolder(fileobj=fh)
                img.to_file_map({"image": holder, "header": holder})
    else:
        nib.save(img, tmp)
    tmp.replace(path)


def _write_fortran(img: nib.Nifti1Image, array: np.ndarray, fh: Any, slab: int = 16) -> bool:
    """Write ``img`` (whose voxels are ``array``, stored unscaled) as nibabel would, the
    voxels in Fortran order a slab of ``slab`` slices at a time; False (nothing written)
    when nibabel must scale or convert them.

    nibabel writes a C-ordered volume plane by plane, each plane gathered across the whole
    array (a stride of the slice axis per voxel). In Fortran order the planes k of one
    volume follow each other, so a slab of them is one contiguous piece of the file; it is
    copied in tiles of ``slab`` rows, which stay in the CPU cache: a third of the time or
    less, one slab in memory at a time (``tests/io/test_nifti.py`` checks that the bytes
    are nibabel's).
    """
    from nibabel.arraywriters import get_slope_inter, make_array_writer

    header = img.header
    if array.ndim < 3 or array.dtype != header.get_data_dtype() or header.extensions:
        return False
    img.update_header()
    writer = make_array_writer(array, array.dtype, header.has_data_slope, True)
    slope, inter = get_slope_inter(writer)
    if slope not in (1.0, None) or inter not in (0.0, None):
        return False
    header.set_slope_inter(slope, inter)
    header.write_to(fh)
    fh.write(b"\0" * (int(header.get_data_offset()) - 352))
    if array.flags.f_contiguous:  # already in file order (as DICOM series are stacked)
        flat = array.reshape(-1, order="F")
        step = max(1, (16 << 20) // max(1, array.itemsize))
        for start in range(0, flat.size, step):
            fh.write(memoryview(flat[start : start + step]).cast("B"))
        return True
    trailing = array.shape[3:]
    buffer = np.empty(array.shape[:2] + (slab,), dtype=array.dtype, order="F")
    # Fortran order over the axes after k too (time, then colour): the first varies fastest.
    for index in itertools.product(*(range(n) for n in reversed(trailing))):
        volume = array[(slice(None), slice(None), slice(None), *reversed(index))]
        for k in range(0, volume.shape[2], slab):
            part = volume[:, :, k : k + slab]
            out = buffer[:, :, : part.shape[2]]
            for i in range(0, part.shape[0], slab):  # tiles that stay in the CPU cache
                out[i : i + slab] = part[i : i + slab]
            fh.write(out.tobytes(order="F"))
    return True


def read_nifti(
    path: Path, limits: Limits | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[str]]:
    """Read a NIfTI input for re-writing under a pseudonym (a 2D image becomes ``(i, j, 1)``).

    The header is checked before any voxel is read: the declared voxels against
    ``limits.max_pixel_bytes`` and the bytes present, the affine for NaN, infinities and
    zero columns.

    Returns:
        (voxels with scaling applied, 4x4 RAS+ affine as nibabel chooses it (sform, else
        qform), sidecar facts, warnings). Header text fields (description, aux file, intent
        name) and extensions, which may name a patient, are not carried over.

    Raises:
        NiftiReadError: unreadable, truncated, too large, or with an unusable affine.
    """
    import nibabel as nib

    try:
        with open_regular(path):
            pass  # a FIFO or device behind a .nii name is refused before nibabel opens it
        img = nib.load(path)
        header = img.header
        check_nifti_header(path, header, tuple(int(s) for s in img.shape), limits or Limits())
        affine = np.asarray(img.affine, dtype=float)
        if not np.all(np.isfinite(affine)):
            raise NiftiReadError("NIfTI affine holds NaN or infinite values")
        if np.any(np.linalg.norm(affine[:3, :3], axis=0) == 0):
            raise NiftiReadError("NIfTI affine has a zero column (a voxel size of 0)")
        slope, inter = header.get_slope_inter()
        if (slope is None or slope == 1) and not inter:
            data = np.asanyarray(img.dataobj)
        else:
            data = np.asarray(img.get_fdata(dtype=np.float32))
    except DicomReadError as exc:
        raise NiftiReadError(str(exc)) from exc
    except Exception as exc:  # nibabel raises many types for damaged files
        raise NiftiReadError(f"not a readable NIfTI file: {type(exc).__name__}: {exc}") from exc
    warnings: list[str] = []
    _, qcode = header.get_qform(coded=True)
    _, scode = header.get_sform(coded=True)
    if not qcode and not scode:
        warnings.append("no qform or sform: world geometry unknown (nibabel's default used)")
    meta = {
        "SourceFormat": "nifti",
        "QformCode": int(qcode or 0),
        "SformCode": int(scode or 0),
        "SourceDataType": str(header.get_data_dtype()),
        "PixelSpacing": [float(z) for z in header.get_zooms()[:2]],
    }
    if data.ndim == 2:
        data = data[:, :, None]
        warnings.append("2D NIfTI: stored as one slice (i, j, 1)")
    return data, affine, meta, warnings


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON with sorted keys and a trailing newline (stable bytes for stable inputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=jsonable) + "\n")
    tmp.replace(path)


def jsonable(value: Any) -> Any:
    """``json.dumps`` default for numpy values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
