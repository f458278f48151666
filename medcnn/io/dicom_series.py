"""Assemble DICOM slices and frames into NIfTI-ordered volumes with their world geometry.

A series is handled as a list of :class:`FrameInfo` records, one per 2D frame, built from
headers alone (single-frame files, each frame of an enhanced multi-frame file, or a Siemens
mosaic file). Grouping works on these records, then :func:`assemble_series` decodes the pixel
data of one group and stacks it:

* voxels are ``(i, j, k)`` = (column, row, slice) for one volume, ``(i, j, k, t)`` for a time
  series (the same positions repeated), and ``(i, j, k, t, c)`` with ``c = 3`` for colour
  (NIfTI's vector layout, with ``t = 1`` for a single volume);
* slices are sorted along the slice normal by ImagePositionPatient and the affine follows
  :mod:`medcnn.io.geometry` (LPS -> RAS+), as dcm2niix does.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from medcnn.io import geometry
from medcnn.io.dicom import DicomImage, DicomReadError, invert_monochrome1, number_list
from medcnn.io.dicom_decode import as_frames, decode_file, native_frame
from medcnn.io.dicom_frames import (
    COLOUR_PHOTOMETRICS,
    DEFAULT_IOP,
    FrameInfo,
    diffusion_table,
    frames_from_header,
    ge_pepolar,
    is_mosaic,
    is_siemens_xa,
    time_order,
)
from medcnn.io.dicom_meta import acquisition_meta, compact, enhanced_meta
from medcnn.io.mosaic import assemble_mosaic

#: Also importable from here (their homes are the modules imported above).
__all__ = [
    "COLOUR_PHOTOMETRICS",
    "DEFAULT_IOP",
    "AssemblyOptions",
    "FrameInfo",
    "acquisition_meta",
    "assemble_series",
    "compact",
    "frames_by_position",
    "frames_from_header",
    "is_mosaic",
]


def _frame_values(
    pixels: np.ndarray,
    info: FrameInfo,
    ref: Dataset,
    own: Dataset | None,
    options: AssemblyOptions | None = None,
) -> np.ndarray:
    """One frame after the modality LUT and MONOCHROME1 inversion, shape (rows, cols[, 3]).

    Args:
        pixels: the file's frames.
        info: the frame.
        ref: the series' first dataset (bit depth, and whether a LUT sequence is in use).
        own: the frame's own dataset when the modality LUT is a table (then needed), or None
            when RescaleSlope/Intercept from ``info`` describe it (slopes vary per slice in
            PET and some CT, so they are always taken per frame).
        options: the Philips scaling and phase units (defaults: precise, radians).
    """
    options = options or AssemblyOptions()
    raw = pixels[info.frame or 0]
    if info.colour:
        return raw
    if own is not None:
        values = apply_modality_lut(raw, own).astype(np.float64)
    else:
        values = raw.astype(np.float64) * info.slope + info.intercept
    if info.photometric == "MONOCHROME1":
        if own is not None:
            values = invert_monochrome1(values, own)
        else:
            values = invert_monochrome1(values, ref, slope=info.slope, intercept=info.intercept)
    if philips_mode(info, options) == "precise":
        # Philips' floating-point value FP = DV / (RS * SS), DV = PV * RS + RI (the display
        # value): dcm2niix's default ("precise", -p y).
        values = values / (info.slope * float(info.philips_scale or 1.0))
    if info.component == "phase" and options.phase_units == "radians":
        values = phase_radians(values, info, ref)
    return values


def philips_mode(info: FrameInfo, options: AssemblyOptions) -> str:
    """How a frame's values are scaled: ``precise`` (Philips FP values), ``display``
    (RescaleSlope/Intercept only), ``real-world`` (the header gives physical units, such as a
    B0 map in Hz: the rescaled values are those units) or ``standard`` (not Philips scaling)."""
    if info.philips_scale is None:
        return "standard"
    if info.units:
        return "real-world"
    if options.philips_scaling == "display" or info.slope == 0:
        return "display"
    return "precise"


#: Units a phase image's rescaled values may be stated in, with their factor to radians.
PHASE_UNIT_FACTORS = {"RAD": 1.0, "RADIANS": 1.0, "MRAD": 1e-3, "MILLIRADIANS": 1e-3}


def phase_radians(values: np.ndarray, info: FrameInfo, ref: Dataset) -> np.ndarray:
    """Phase values in radians.

    A unit in the header (``rad``, ``mrad``) is used as it is; values already within
    [-pi, pi] are radians; otherwise the range the stored bits can hold (after the
    rescale) is mapped linearly onto [-pi, pi), as Siemens (12 bits, slope 2, intercept
    -4096: -4096..4094) and GE phase images intend.
    """
    factor = PHASE_UNIT_FACTORS.get(info.units.upper())
    if factor is not None:
        return values * factor
    if values.size and float(np.abs(values).max()) <= np.pi + 1e-3:
        return values
    bits = int((number_list(ref, "BitsStored") or [12])[0])
    signed = int((number_list(ref, "PixelRepresentation") or [0])[0]) == 1
    lo = -(2 ** (bits - 1)) if signed else 0
    levels = 2**bits
    low = lo * info.slope + info.intercept
    span = levels * abs(info.slope or 1.0)
    return (values - low) / span * (2 * np.pi) - np.pi


def _position_groups(frames: list[FrameInfo], normal: np.ndarray) -> list[list[FrameInfo]]:
    """Frames grouped by slice position, ascending along the normal."""
    dist = sorted(((float(np.dot(f.position(), normal)), f) for f in frames), key=lambda x: x[0])
    groups: list[list[FrameInfo]] = []
    start = 0.0
    for d, info in dist:
        if not groups or d - start > geometry.POSITION_TOLERANCE_MM:
            groups.append([])
            start = d
        groups[-1].append(info)
    return groups


def frames_by_position(frames: list[FrameInfo]) -> list[list[FrameInfo]]:
    """The frames of one series grouped by slice position, in the NIfTI k order.

    :func:`assemble_series` stacks slice k from group k (before any resampling), so this
    maps each slice of its output back to the frames (and files) it came from.
    """
    if not frames:
        return []
    normal = geometry.slice_normal(np.asarray(frames[0].orientation(), dtype=float))
    groups = _position_groups(frames, normal)
    for group in groups:
        group.sort(key=time_order)
    return groups


UNEVEN_POLICIES = ("resample", "reject", "keep")


@dataclass
class AssemblyOptions:
    """Choices that the configuration makes.

    Attributes:
        uneven_spacing: what to do with uneven slice gaps or missing slices: ``resample``
            (interpolate onto the typical gap), ``reject`` (quarantine the series) or
            ``keep`` (write the slices as they are with the mean gap, which misplaces some).
        labels: the series is a label map: ``resample`` takes the nearest slice instead of
            interpolating.
        philips_scaling: ``precise`` (Philips' floating-point values, dcm2niix's default)
            or ``display`` (RescaleSlope/Intercept only, dcm2niix ``-p n``). Frames whose
            header gives physical units (a B0 map in Hz) keep those units either way.
        phase_units: ``radians`` (phase images mapped onto [-pi, pi)) or ``stored`` (the
            rescaled stored values, as dcm2niix writes them).
    """

    uneven_spacing: str = "resample"
    labels: bool = False
    philips_scaling: str = "precise"
    phase_units: str = "radians"


@dataclass
class SeriesGeometry:
    """Facts about the stacking, for the sidecar."""

    n_slices: int = 1
    n_volumes: int = 1
    slice_step: float | None = None
    uneven: bool = False
    missing_slices: int = 0
    gaps: list[float] = field(default_factory=list)
    resampled: bool = False
    tilt_deg: float = 0.0


def assemble_series(frames: list[FrameInfo], options: AssemblyOptions) -> DicomImage:
    """Decode and stack the frames of one (already split) series.

    Args:
        frames: the frames of one series: same size, orientation, echo and colour.
        options: what to do with uneven spacing.

    Returns:
        the image in NIfTI axis order with its RAS+ affine; ``meta`` holds the acquisition
        facts of the first file plus the stacking facts; ``warnings`` what went wrong.

    Raises:
        DicomReadError: undecodable pixel data, inconsistent frames, or uneven spacing under
            ``reject``; the message is fit for ``quarantine.tsv``.
    """
    if not frames:
        raise DicomReadError("empty series")
    if options.uneven_spacing not in UNEVEN_POLICIES:
        raise ValueError(f"uneven_spacing must be one of {UNEVEN_POLICIES}")
    if frames[0].mosaic:
        return assemble_mosaic(frames)
    placed = all(f.ipp is None for f in frames)
    if placed:
        frames = centred_positions(frames)
    first = frames[0]
    iop = np.asarray(first.orientation(), dtype=float)
    normal = geometry.slice_normal(iop)
    by_position = _position_groups(frames, normal)
    counts = {len(g) for g in by_position}
    if len(counts) != 1:
        raise DicomReadError(
            f"slice positions repeat unevenly ({min(counts)}-{max(counts)} frames per "
            f"position over {len(by_position)} positions); cannot form volumes"
        )
    for group in by_position:
        group.sort(key=time_order)
    n_volumes = counts.pop()
    data, first_ds = _stack_pixels(by_position, n_volumes, options)
    warnings: list[str] = []
    geo = SeriesGeometry(n_slices=len(by_position), n_volumes=n_volumes)
    data = _check_spacing(data, by_position, normal, options, geo, warnings)
    step_single = number_list(first_ds, "SpacingBetweenSlices") or number_list(
        first_ds, "SliceThickness"
    )
    affine = geometry.stack_affine(
        iop,
        by_position[0][0].position(),
        by_position[-1][0].position(),
        geo.n_slices,
        first.spacing,
        single_slice_step=abs(step_single[0]) if step_single and step_single[0] else 1.0,
    )
    if first.spacing_source == "none":
        warnings.append("no PixelSpacing or ImagerPixelSpacing: assuming 1 mm")
    if first.iop is None and geo.n_slices > 1:
        warnings.append("no ImageOrientationPatient: slice geometry assumed")
    if placed:
        warnings.append(
            "no ImagePositionPatient: slices stacked in InstanceNumber order, the volume"
            " centred on the scanner origin (as dcm2niix)"
        )
    if first.colour:
        data = data.reshape(data.shape[:2] + (geo.n_slices, n_volumes, 3))
    elif n_volumes == 1:
        data = data[:, :, :, 0]
    header = first_ds.copy()
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in header:
            delattr(header, keyword)
    meta = _series_meta(first_ds, first, iop, geo)
    if ge_pepolar(first_ds)[0] and not first.colour:
        # dcm2niix (issue 532, unless built with myDisableGEPEPolarFlip) writes the reversed
        # volumes of a GE epi_pepolar series with their rows in the other order under the
        # same affine, so that they look like forward ones: the same here.
        data = np.flip(data, axis=1).copy(order="F")
        meta["PEPolarRowsReversed"] = True
        warnings.append(
            "GE epi_pepolar reversed phase encoding: rows written in reverse order under the"
            " usual affine, as dcm2niix does (issue 532)"
        )
    if first.enhanced:
        extra = enhanced_meta(first_ds, first.frame or 0)
        positive = extra.pop("PhaseEncodingDirectionPositive", None)
        if positive is not None and "PhaseEncodingAxis" in meta:
            direction = meta["PhaseEncodingAxis"] + ("" if positive else "-")
            meta.setdefault("PhaseEncodingDirection", direction)
        for key, value in extra.items():
            meta.setdefault(key, value)
    meta.update(scaling_meta([g[0] for g in by_position] + by_position[0], options))
    _mark_component(meta, first)
    if "SliceTiming" not in meta:
        timing = slice_timing(first_ds, first, by_position, n_volumes)
        if timing is not None:
            meta["SliceTiming"] = timing
    diffusion = diffusion_table(by_position[0])
    if diffusion is not None and geo.resampled:
        warnings.append("diffusion series resampled between slices")
    if diffusion is not None:
        series = meta.get("SeriesNumber")
        for note in sorted({f.diffusion_note for f in by_position[0] if f.diffusion_note}):
            warnings.append(f"series {series}: {note}")
    return DicomImage(
        # Stacked in compact's type already; a resampled (float32) stack is compacted here.
        data=compact(data) if geo.resampled else data,
        affine=affine,
        header=header,
        meta=meta,
        warnings=warnings,
        diffusion=diffusion,
    )


def acquisition_slice_timing(by_position: list[list[FrameInfo]]) -> list[float] | None:
    """Slice times (s, per NIfTI k) of a 2D time series from each slice's acquisition time in
    the first volume (per-frame FrameAcquisitionDateTime of enhanced files, AcquisitionTime of
    single-frame files), relative to the earliest; None when they are missing, all equal (a
    file-level time, as Philips writes) or spread over a volume's repetition or more."""
    times = [group[0].acquisition_time for group in by_position]
    if len(times) < 2 or any(t is None for t in times):
        return None
    zero = min(times)  # type: ignore[type-var]
    relative = [round(float(t - zero), 6) for t in times]  # type: ignore[operator]
    spread = max(relative)
    repeat = by_position[0][1].acquisition_time if len(by_position[0]) > 1 else None
    if spread <= 0 or (repeat is not None and repeat - times[0] <= spread):  # type: ignore[operator]
        return None
    return relative


def slice_timing(
    ds: Dataset, first: FrameInfo, by_position: list[list[FrameInfo]], n_volumes: int
) -> list[float] | None:
    """SliceTiming (s, per NIfTI k) where dcm2niix writes it: enhanced files' time series
    from the frames' acquisition times; Siemens single-frame MR from each slice's header
    (:func:`siemens_slice_timing`, any number of volumes, none for 3D); GE time series from
    the protocol block (:func:`ge_slice_timing`); UIH time series from AcquisitionTime.
    dcm2niix (v1.0.20260724, checked on written files) gives Philips, Canon, Toshiba,
    Hitachi and Bruker single-frame series none, so neither does this."""
    manufacturer = str(ds.get("Manufacturer", "")).upper()
    if first.enhanced:
        return acquisition_slice_timing(by_position) if n_volumes > 1 else None
    if "SIEMENS" in manufacturer:
        return siemens_slice_timing(ds, by_position) if siemens_classic_2d(ds, first) else None
    if n_volumes < 2:
        return None
    if "GE" in manufacturer.split():
        return ge_slice_timing(ds, by_position)
    if "UIH" in manufacturer.split():
        return acquisition_slice_timing(by_position)
    return None


def siemens_classic_2d(ds: Dataset, first: FrameInfo) -> bool:
    """A Siemens MR series of single-frame, non-mosaic files that is not a 3D acquisition:
    the kind whose slice timing dcm2niix takes from each slice's header
    (:func:`siemens_slice_timing`)."""
    return (
        "SIEMENS" in str(ds.get("Manufacturer", "")).upper()
        and str(ds.get("Modality", "")).upper() == "MR"
        and first.frame is None
        and not first.mosaic
        and str(ds.get("MRAcquisitionType", "") or "").upper() != "3D"
    )


def _float32_hhmmss_seconds(seconds: float) -> float:
    """Seconds since midnight as dcm2niix has them from an AcquisitionTime: the HHMMSS.ffffff
    number held in single precision (1/128 s steps after 06:55:36), then split into hours,
    minutes and seconds."""
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    value = float(np.float32(hours * 10000 + minutes * 100 + secs))
    hh, rest = divmod(value, 10000.0)
    mm, ss = divmod(rest, 100.0)
    return hh * 3600 + mm * 60 + ss


def siemens_slice_timing(ds: Dataset, by_position: list[list[FrameInfo]]) -> list[float] | None:
    """Slice times (s, per NIfTI k) of a Siemens 2D MR series of single-frame, non-mosaic
    files, as dcm2niix gives them (checked with the PyPI v1.0.20260724 on written files): the
    first volume's slices' times less the earliest, one volume or many. XA software (as
    :func:`medcnn.io.dicom_frames.is_siemens_xa` tells it) times each slice by TimeAfterStart
    (0021,1104), and has none without it; others none where TimeAfterStart is there, else
    by AcquisitionTime, read as dcm2niix reads it (a single
    precision HHMMSS number: :func:`_float32_hhmmss_seconds`). None when a slice has no
    time or all times are equal."""
    if len(by_position) < 2:
        return None
    if is_siemens_xa(ds):
        times = [group[0].time_after_start for group in by_position]
    elif any(f.time_after_start is not None for group in by_position for f in group):
        return None  # dcm2niix: TimeAfterStart outside XA leaves no slice times
    else:
        raw = [group[0].acquisition_time for group in by_position]
        times = [None if t is None else _float32_hhmmss_seconds(t) for t in raw]
    if any(t is None for t in times):
        return None
    zero = min(times)  # type: ignore[type-var]
    relative = [round(float(t - zero), 6) for t in times]  # type: ignore[operator]
    if max(relative) <= 0:
        return None
    return relative


def ge_protocol(ds: Dataset) -> dict[str, str]:
    """GE's protocol data block (0025,101B): a 4-byte length, then gzip'd ``KEY "value"``
    lines; {} when absent or unreadable."""
    if "GE" not in str(ds.get("Manufacturer", "")).upper().split() or (0x0025, 0x101B) not in ds:
        return {}
    raw = ds[0x0025, 0x101B].value
    try:
        text = gzip.decompress(bytes(raw)[4:]).decode("latin-1")
    except (OSError, EOFError, TypeError, ValueError):
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            out[key] = value.strip().strip('"')
    return out


def ge_slice_timing(ds: Dataset, by_position: list[list[FrameInfo]]) -> list[float] | None:
    """Slice times (s, per NIfTI k) of a GE 2D time series, as dcm2niix derives them: GE
    numbers slices spatially (InstanceNumber order within a volume), the protocol block's
    SLICEORDER says sequential (0) or interleaved (1, every other slice first), and the
    slices share the TR less DELACQ evenly."""
    protocol = ge_protocol(ds)
    order = protocol.get("SLICEORDER")
    tr = number_list(ds, "RepetitionTime")
    if order not in ("0", "1") or not tr or str(ds.get("MRAcquisitionType", "")).upper() == "3D":
        return None
    n = len(by_position)
    try:
        delay = float(protocol.get("DELACQ", "0") or 0)
    except ValueError:
        delay = 0.0
    step = (tr[0] - delay) / 1000.0 / n
    spatial = sorted(range(n), key=lambda k: (by_position[k][0].instance, k))
    times = [0.0] * n
    for j, k in enumerate(spatial):
        rank = j if order == "0" else (j // 2 if j % 2 == 0 else (n + 1) // 2 + j // 2)
        times[k] = round(rank * step, 6)
    return times


#: The ImageType value dcm2niix appends for each image component (magnitude is left as is:
#: dcm2niix versions differ on it).
COMPONENT_TYPES = {"phase": "PHASE", "real": "REAL", "imaginary": "IMAGINARY"}


def _mark_component(meta: dict[str, Any], first: FrameInfo) -> None:
    """ImageType as dcm2niix writes it: the component appended (PHASE, REAL, IMAGINARY, or
    FIELDMAPHZ for a field map in Hz) unless it is there already."""
    kinds = list(meta.get("ImageType") or [])
    extra = COMPONENT_TYPES.get(first.component)
    if first.component == "fieldmap" and first.units.upper() == "HZ":
        extra = "FIELDMAPHZ"
    if extra and extra not in kinds:
        meta["ImageType"] = [*kinds, extra]


def centred_positions(frames: list[FrameInfo]) -> list[FrameInfo]:
    """Positions for frames that have none: one slice per file (per frame of an enhanced
    file, within each time point) in InstanceNumber order, SpacingBetweenSlices (else
    SliceThickness, else 1 mm) apart, with the centre of the volume at the origin, as
    dcm2niix places such a series. Frames of a legacy multi-frame file stay at one position
    (they are time points)."""
    first = frames[0]
    iop = np.asarray(first.orientation(), dtype=float)
    row_dir, col_dir, normal = iop[:3], iop[3:6], geometry.slice_normal(iop)
    row_mm, col_mm = first.spacing
    step = first.slice_step or 1.0
    slice_of: dict[int, int] = {}
    counters: dict[Any, int] = {}
    for info in sorted(frames, key=lambda f: (f.instance, str(f.path), f.frame or 0)):
        key = info.temporal if info.enhanced else (info.path if info.frame is not None else 0)
        if info.frame is not None and not info.enhanced:
            slice_of[id(info)] = 0
            continue
        slice_of[id(info)] = counters.get(key, 0)
        counters[key] = slice_of[id(info)] + 1
    n_slices = max(slice_of.values()) + 1
    corner = -(row_dir * col_mm * (first.columns - 1) + col_dir * row_mm * (first.rows - 1)) / 2
    out = []
    for info in frames:
        k = slice_of[id(info)]
        ipp = corner + normal * step * (k - (n_slices - 1) / 2)
        out.append(replace(info, ipp=tuple(float(v) for v in ipp)))
    return out


def scaling_meta(frames: list[FrameInfo], options: AssemblyOptions) -> dict[str, Any]:
    """The sidecar record of how voxel values were scaled (Philips choice and factors, the
    phase units), with dcm2niix's keys for Philips."""
    first = frames[0]
    out: dict[str, Any] = {}
    if first.component:
        out["ImageComponent"] = first.component
    if first.units:
        out["Units"] = first.units
    mode = philips_mode(first, options)
    if mode != "standard":
        out["PhilipsRescaleSlope"] = first.slope
        out["PhilipsRescaleIntercept"] = first.intercept
        out["PhilipsScaleSlope"] = first.philips_scale
        out["UsePhilipsFloatNotDisplayScaling"] = int(mode == "precise")
        factors = {(f.slope, f.intercept, f.philips_scale) for f in frames}
        out["IntensityScaling"] = {
            "mode": mode,
            "formula": {
                "precise": "(stored * RescaleSlope + RescaleIntercept) / (RescaleSlope * "
                "PhilipsScaleSlope)",
                "display": "stored * RescaleSlope + RescaleIntercept",
                "real-world": f"stored * RescaleSlope + RescaleIntercept (in {first.units})",
            }[mode],
            "option": "ingest.philips_scaling",
            "factors_vary_per_frame": len(factors) > 1,
        }
    if first.component == "phase":
        out["PhaseUnits"] = "rad" if options.phase_units == "radians" else "stored"
    return out


def _stack_pixels(
    by_position: list[list[FrameInfo]], n_volumes: int, options: AssemblyOptions
) -> tuple[np.ndarray, Dataset]:
    """Decode file by file into ``(i, j, k, t[, 3])``, and the first file's dataset.

    Only the datasets this series needs are kept (one series in memory): the full header is
    parsed for the first file (sidecar facts) and, when the modality LUT is a table rather
    than slope/intercept, for every file; otherwise only pixels.
    """
    first = by_position[0][0]
    first_ds, first_pixels = decode_file(first.path, header=True)
    if first_ds is None:  # header=True always returns the dataset
        raise DicomReadError(f"{first.path.name}: no header")
    lut_table = "ModalityLUTSequence" in first_ds
    cache: dict[Path, tuple[Dataset | None, np.ndarray]] = {
        first.path: (first_ds if lut_table else None, as_frames(first_pixels, first))
    }
    del first_pixels
    shape = (first.columns, first.rows, len(by_position), n_volumes)
    if first.colour:
        data = np.zeros(shape + (3,), dtype=np.uint8)
    else:
        # Preallocated in the storage type :func:`compact` would pick for the whole series
        # (promoted when a frame needs a wider one), in Fortran order: a frame is one
        # contiguous block and the NIfTI writer streams the array as it lies.
        data = None  # allocated at the first frame, in the type it calls for
        state = _CompactState()
    # File by file (each decoded once, one in memory at a time), each of its frames put in
    # its place (k, t): the frames of multi-frame files interleave in (k, t) order, which
    # decoded such a file again for each run of its frames.
    slots: dict[Path, list[tuple[int, int, FrameInfo]]] = {}
    for k, group in enumerate(by_position):
        for t, info in enumerate(group):
            slots.setdefault(info.path, []).append((k, t, info))
    for path, members in slots.items():
        if path not in cache:
            info = members[0][2]
            raw = None
            if not lut_table and info.frame is None and not first.colour:
                raw = native_frame(path, first_ds, first.rows, first.columns)
            if raw is not None:
                own, pixels = None, raw[None]
            else:
                own, pixels = decode_file(path, header=lut_table)
            cache = {path: (own, as_frames(pixels, info))}  # one file at a time
        own, pixels = cache[path]
        for k, t, info in members:
            values = _frame_values(pixels, info, first_ds, own, options)
            if values.shape[:2] != (first.rows, first.columns):
                raise DicomReadError(
                    f"{info.path.name}: frame size {values.shape[:2]} differs from the series"
                )
            if not first.colour:
                dtype = state.update(values)
                if data is None:
                    data = np.zeros(shape, dtype=dtype, order="F")
                elif dtype != data.dtype:
                    data = data.astype(dtype, order="F")
            # (rows, columns) -> (columns, rows): NIfTI's i runs along a row.
            data[:, :, k, t] = np.swapaxes(values, 0, 1)
    return data, first_ds


class _CompactState:
    """The storage type :func:`compact` would choose for all frames seen so far: int16,
    uint16 or int32 while every value is whole and in range, else float32.

    Casting each frame to it as it comes gives the very array ``compact`` gives for the
    float64 stack (integers exactly; float32 rounding is per value either way)."""

    def __init__(self) -> None:
        self.whole = True
        self.lo = np.inf
        self.hi = -np.inf
        self.dtype: np.dtype = np.dtype(np.int16)

    def update(self, values: np.ndarray) -> np.dtype:
        if self.whole and values.size:
            if np.issubdtype(values.dtype, np.integer):
                lo, hi = float(values.min()), float(values.max())
            elif np.all(np.isfinite(values)) and np.array_equal(values, np.round(values)):
                lo, hi = float(values.min()), float(values.max())
            else:
                self.whole = False
                lo = hi = 0.0
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        if not self.whole:
            self.dtype = np.dtype(np.float32)
            return self.dtype
        for dtype in (np.int16, np.uint16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= self.lo and self.hi <= info.max:
                self.dtype = np.dtype(dtype)
                return self.dtype
        self.whole = False
        self.dtype = np.dtype(np.float32)
        return self.dtype


def _check_spacing(
    data: np.ndarray,
    by_position: list[list[FrameInfo]],
    normal: np.ndarray,
    options: AssemblyOptions,
    geo: SeriesGeometry,
    warnings: list[str],
) -> np.ndarray:
    """Slice step, gantry tilt and uneven spacing (resampled, kept or rejected per
    ``options``); fills ``geo`` and ``warnings`` and returns the (maybe resampled) voxels."""
    positions = np.array([float(np.dot(g[0].position(), normal)) for g in by_position])
    report = geometry.analyse_spacing(positions)
    first_ipp = by_position[0][0].position()
    last_ipp = by_position[-1][0].position()
    if geo.n_slices > 1:
        geo.slice_step = report.step
        geo.tilt_deg = geometry.tilt_degrees(last_ipp - first_ipp, normal)
        if geo.tilt_deg > geometry.TILT_TOLERANCE_DEG:
            warnings.append(
                f"gantry tilt of {geo.tilt_deg:.2f} degrees: the affine is sheared (sform exact,"
                " qform the closest rigid approximation)"
            )
    if not report.uneven:
        return data
    geo.uneven, geo.missing_slices, geo.gaps = True, report.missing, report.gaps
    what = (
        f"{report.missing} missing slice(s)"
        if report.missing
        else f"uneven slice spacing (gaps {report.gaps} mm)"
    )
    if options.uneven_spacing == "reject":
        raise DicomReadError(f"{what}; rejected (ingest.uneven_spacing: reject)")
    span = float(report.positions[-1] - report.positions[0])
    sparse = report.step > 0 and span / report.step + 1 > 2 * geo.n_slices
    if options.uneven_spacing == "resample" and sparse:
        # Interpolating more slices than were acquired invents most of the volume (a few
        # scattered slices of a long series, say): better keep what is there.
        warnings.append(f"{what}: too sparse to resample, kept as acquired (mean gap)")
    elif options.uneven_spacing == "resample" and not by_position[0][0].colour:
        data, new_positions = geometry.resample_regular(
            data.astype(np.float64), report.positions, report.step, nearest=options.labels
        )
        geo.n_slices = data.shape[2]
        geo.resampled = True
        # The last slice keeps its position, so the mean step stays exact and in-plane
        # shifts (tilt) are interpolated along the same line.
        warnings.append(
            f"{what}: resampled to {geo.n_slices} slices {np.diff(new_positions).mean():.4g} mm"
            f" apart by {'nearest-slice' if options.labels else 'linear'} interpolation"
        )
    else:
        warnings.append(f"{what}: kept as acquired, the affine uses the mean gap")
    return data


def _series_meta(
    first_ds: Dataset, first: FrameInfo, iop: np.ndarray, geo: SeriesGeometry
) -> dict[str, Any]:
    """The sidecar facts of a stacked series: acquisition, then stacking."""
    meta = acquisition_meta(first_ds)
    meta.update(
        {
            "PhotometricInterpretation": "RGB" if first.colour else first.photometric,
            "PixelSpacing": list(first.spacing),
            "PixelSpacingSource": first.spacing_source,
            "ImageOrientationPatientDICOM": [float(v) for v in iop],
            "NumberOfSlices": geo.n_slices,
            "NumberOfVolumes": geo.n_volumes,
            "SliceStep": geo.slice_step,
            "UnevenSpacing": geo.uneven,
            "MissingSlices": geo.missing_slices,
            "SliceGaps": geo.gaps,
            "Resampled": geo.resampled,
            "GantryTiltDegrees": round(geo.tilt_deg, 4),
            "EnhancedMultiFrame": first.frame is not None
            and first_ds.get("PerFrameFunctionalGroupsSequence") is not None,
        }
    )
    return meta
