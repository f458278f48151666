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

import warnings as pywarnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array

from medcnn.io import geometry
from medcnn.io.dicom import (
    WARNING_IS_ERROR_SYNTAXES,
    DicomImage,
    DicomReadError,
    decoded_pixels,
    invert_monochrome1,
    looks_like_dicom,
    number_list,
    orientation,
    pixel_spacing,
)
from medcnn.io.files import open_regular

DEFAULT_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
COLOUR_PHOTOMETRICS = frozenset(
    {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}
)
UNEVEN_POLICIES = ("resample", "reject", "keep")


@dataclass
class FrameInfo:
    """One 2D frame, described from the header only (no pixel data is read).

    Attributes:
        path: the file holding the frame.
        frame: index of the frame in a multi-frame file, or None for a single-frame file.
        rows: Rows.
        columns: Columns.
        iop: ImageOrientationPatient (row direction, column direction; LPS), or None.
        ipp: ImagePositionPatient (LPS mm), or None.
        spacing: (row spacing, column spacing) in mm.
        spacing_source: the attribute that gave ``spacing``.
        echo: echo number or time as text ("" when unknown); different echoes are split.
        instance: InstanceNumber (0 when absent).
        acquisition: AcquisitionNumber (0 when absent).
        temporal: TemporalPositionIdentifier/Index (0 when absent).
        stack: StackID of an enhanced multi-frame file ("" otherwise).
        localizer: ImageType says LOCALIZER (scout images are never stacked with a volume).
        mosaic: a Siemens mosaic (several slices tiled in one frame).
        photometric: PhotometricInterpretation.
        samples: SamplesPerPixel.
        slope: RescaleSlope of this frame.
        intercept: RescaleIntercept of this frame.
    """

    path: Path
    frame: int | None
    rows: int
    columns: int
    iop: tuple[float, ...] | None
    ipp: tuple[float, float, float] | None
    spacing: tuple[float, float]
    spacing_source: str
    echo: str = ""
    instance: int = 0
    acquisition: int = 0
    temporal: int = 0
    stack: str = ""
    localizer: bool = False
    mosaic: bool = False
    photometric: str = "MONOCHROME2"
    samples: int = 1
    slope: float = 1.0
    intercept: float = 0.0

    @property
    def colour(self) -> bool:
        """Whether the frame has three samples per pixel."""
        return self.samples == 3 or self.photometric in COLOUR_PHOTOMETRICS

    def orientation(self) -> tuple[float, ...]:
        """IOP, or the default axial orientation when the file has none."""
        return self.iop if self.iop is not None else DEFAULT_IOP

    def position(self) -> np.ndarray:
        """IPP in LPS mm, or the origin when the file has none."""
        return np.asarray(self.ipp if self.ipp is not None else (0.0, 0.0, 0.0), dtype=float)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _first(ds: Dataset | None, sequence: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(sequence)
    return seq[0] if seq else None


def _functional(item: Dataset | None, shared: Dataset | None, sequence: str) -> Dataset | None:
    """A functional group macro from the per-frame item, else from the shared groups."""
    return _first(item, sequence) or _first(shared, sequence)


def is_mosaic(ds: Dataset) -> bool:
    """A Siemens mosaic: ImageType contains MOSAIC."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type


def frames_from_header(ds: Dataset, path: Path) -> list[FrameInfo]:
    """One :class:`FrameInfo` per frame of a header (read with ``stop_before_pixels``)."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    common = dict(
        rows=_int(ds.get("Rows")),
        columns=_int(ds.get("Columns")),
        instance=_int(ds.get("InstanceNumber")),
        acquisition=_int(ds.get("AcquisitionNumber")),
        localizer="LOCALIZER" in image_type,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        samples=_int(ds.get("SamplesPerPixel", 1)) or 1,
    )
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        iop = orientation(ds)
        ipp = number_list(ds, "ImagePositionPatient")
        spacing, source = pixel_spacing(ds)
        n_frames = _int(ds.get("NumberOfFrames", 1)) or 1
        base = FrameInfo(
            path=path,
            frame=None,
            iop=tuple(iop[:6]) if iop and len(iop) >= 6 else None,
            ipp=tuple(ipp[:3]) if ipp and len(ipp) >= 3 else None,  # type: ignore[arg-type]
            spacing=spacing,
            spacing_source=source,
            echo=_text(ds.get("EchoNumbers")) or _text(ds.get("EchoTime")),
            temporal=_int(ds.get("TemporalPositionIdentifier")),
            mosaic=is_mosaic(ds),
            slope=(number_list(ds, "RescaleSlope") or [1.0])[0],
            intercept=(number_list(ds, "RescaleIntercept") or [0.0])[0],
            **common,
        )
        if n_frames == 1:
            return [base]
        # A legacy multi-frame file without functional groups (cine, NM, US): every frame
        # shares the one position, so the frames become time points.
        frames = []
        for index in range(n_frames):
            info = FrameInfo(**{**base.__dict__, "frame": index, "temporal": index + 1})
            frames.append(info)
        return frames

    shared = _first(ds, "SharedFunctionalGroupsSequence")
    frames = []
    for index, item in enumerate(per_frame):
        plane = _functional(item, shared, "PlaneOrientationSequence")
        position = _functional(item, shared, "PlanePositionSequence")
        measures = _functional(item, shared, "PixelMeasuresSequence")
        transform = _functional(item, shared, "PixelValueTransformationSequence")
        content = _first(item, "FrameContentSequence")
        echo_item = _functional(item, shared, "MREchoSequence")
        iop = orientation(plane) if plane else None
        ipp = number_list(position, "ImagePositionPatient") if position else None
        if measures is not None and number_list(measures, "PixelSpacing"):
            spacing, source = pixel_spacing(measures)
        else:
            spacing, source = pixel_spacing(ds)
        frames.append(
            FrameInfo(
                path=path,
                frame=index,
                iop=tuple(iop[:6]) if iop and len(iop) >= 6 else None,
                ipp=tuple(ipp[:3]) if ipp and len(ipp) >= 3 else None,  # type: ignore[arg-type]
                spacing=spacing,
                spacing_source=source,
                echo=_text(echo_item.get("EffectiveEchoTime")) if echo_item else "",
                temporal=_int(content.get("TemporalPositionIndex")) if content else 0,
                stack=_text(content.get("StackID")) if content else "",
                slope=(number_list(transform, "RescaleSlope") or [1.0])[0],
                intercept=(number_list(transform, "RescaleIntercept") or [0.0])[0],
                **{**common, "instance": index + 1},
            )
        )
    return frames


def _decode(path: Path, header: bool = True) -> tuple[Dataset | None, np.ndarray]:
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
                    meta = pydicom.filereader.read_file_meta_info(fh)
                    syntax = str(meta.get("TransferSyntaxUID", ""))
                    if syntax.startswith(WARNING_IS_ERROR_SYNTAXES):
                        return _decode(path, header=True)
                    fh.seek(0)
                    pixels = pixel_array(fh)
            except DicomReadError:
                raise
            except Exception:  # deflated or unusual files: parse them in full
                return _decode(path, header=True)
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


def _as_frames(pixels: np.ndarray, info: FrameInfo) -> np.ndarray:
    """Add the frame axis that pydicom drops for single-frame files."""
    if pixels.ndim == (3 if info.colour else 2):
        pixels = pixels[None]
    if pixels.ndim != (4 if info.colour else 3):
        raise DicomReadError(f"{info.path.name}: unexpected pixel array shape {pixels.shape}")
    return pixels


def _frame_values(
    pixels: np.ndarray, info: FrameInfo, ref: Dataset, own: Dataset | None
) -> np.ndarray:
    """One frame after the modality LUT and MONOCHROME1 inversion, shape (rows, cols[, 3]).

    Args:
        pixels: the file's frames.
        info: the frame.
        ref: the series' first dataset (bit depth, and whether a LUT sequence is in use).
        own: the frame's own dataset when the modality LUT is a table (then needed), or None
            when RescaleSlope/Intercept from ``info`` describe it (slopes vary per slice in
            PET and some CT, so they are always taken per frame).
    """
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
    return values


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
        group.sort(key=_time_order)
    return groups


def _time_order(info: FrameInfo) -> tuple:
    return (info.temporal, info.acquisition, info.instance, info.frame or 0, str(info.path))


@dataclass
class AssemblyOptions:
    """Choices that the configuration makes.

    Attributes:
        uneven_spacing: what to do with uneven slice gaps or missing slices: ``resample``
            (interpolate onto the typical gap), ``reject`` (quarantine the series) or
            ``keep`` (write the slices as they are with the mean gap, which misplaces some).
        labels: the series is a label map: ``resample`` takes the nearest slice instead of
            interpolating.
    """

    uneven_spacing: str = "resample"
    labels: bool = False


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
        return _assemble_mosaic(frames)
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
        group.sort(key=_time_order)
    n_slices, n_volumes = len(by_position), counts.pop()

    # Decode file by file; keep only the datasets this series needs (one series in memory).
    # The full header is parsed for the first file (sidecar facts) and, when the modality
    # LUT is a table rather than slope/intercept, for every file; otherwise only pixels.
    first_ds, first_pixels = _decode(first.path, header=True)
    assert first_ds is not None
    lut_table = "ModalityLUTSequence" in first_ds
    cache: dict[Path, tuple[Dataset | None, np.ndarray]] = {
        first.path: (first_ds if lut_table else None, _as_frames(first_pixels, first))
    }
    del first_pixels
    warnings: list[str] = []
    colour = first.colour
    shape = (first.columns, first.rows, n_slices, n_volumes) + ((3,) if colour else ())
    data = np.zeros(shape, dtype=np.uint8 if colour else np.float64)
    for k, group in enumerate(by_position):
        for t, info in enumerate(group):
            if info.path not in cache:
                own, pixels = _decode(info.path, header=lut_table)
                cache = {info.path: (own, _as_frames(pixels, info))}  # one file at a time
            own, pixels = cache[info.path]
            values = _frame_values(pixels, info, first_ds, own)
            if values.shape[:2] != (first.rows, first.columns):
                raise DicomReadError(
                    f"{info.path.name}: frame size {values.shape[:2]} differs from the series"
                )
            # (rows, columns) -> (columns, rows): NIfTI's i runs along a row.
            data[:, :, k, t] = np.swapaxes(values, 0, 1)

    geo = SeriesGeometry(n_slices=n_slices, n_volumes=n_volumes)
    positions = np.array([float(np.dot(g[0].position(), normal)) for g in by_position])
    report = geometry.analyse_spacing(positions)
    first_ipp = by_position[0][0].position()
    last_ipp = by_position[-1][0].position()
    if n_slices > 1:
        geo.slice_step = report.step
        geo.tilt_deg = geometry.tilt_degrees(last_ipp - first_ipp, normal)
        if geo.tilt_deg > geometry.TILT_TOLERANCE_DEG:
            warnings.append(
                f"gantry tilt of {geo.tilt_deg:.2f} degrees: the affine is sheared (sform exact,"
                " qform the closest rigid approximation)"
            )
    if report.uneven:
        geo.uneven, geo.missing_slices, geo.gaps = True, report.missing, report.gaps
        what = (
            f"{report.missing} missing slice(s)"
            if report.missing
            else f"uneven slice spacing (gaps {report.gaps} mm)"
        )
        if options.uneven_spacing == "reject":
            raise DicomReadError(f"{what}; rejected (ingest.uneven_spacing: reject)")
        span = float(report.positions[-1] - report.positions[0])
        sparse = report.step > 0 and span / report.step + 1 > 2 * n_slices
        if options.uneven_spacing == "resample" and sparse:
            # Interpolating more slices than were acquired invents most of the volume (a few
            # scattered slices of a long series, say): better keep what is there.
            warnings.append(f"{what}: too sparse to resample, kept as acquired (mean gap)")
        elif options.uneven_spacing == "resample" and not colour:
            data, new_positions = geometry.resample_regular(
                data, report.positions, report.step, nearest=options.labels
            )
            n_slices = data.shape[2]
            geo.resampled = True
            # The last slice keeps its position, so the mean step stays exact and in-plane
            # shifts (tilt) are interpolated along the same line.
            warnings.append(
                f"{what}: resampled to {n_slices} slices {np.diff(new_positions).mean():.4g} mm"
                f" apart by {'nearest-slice' if options.labels else 'linear'} interpolation"
            )
        else:
            warnings.append(f"{what}: kept as acquired, the affine uses the mean gap")
        geo.n_slices = n_slices

    step_single = float(first_ds.get("SpacingBetweenSlices") or first_ds.get("SliceThickness") or 1)
    affine = geometry.stack_affine(
        iop, first_ipp, last_ipp, n_slices, first.spacing, single_slice_step=abs(step_single)
    )
    if first.spacing_source == "none":
        warnings.append("no PixelSpacing or ImagerPixelSpacing: assuming 1 mm")
    if first.iop is None and n_slices > 1:
        warnings.append("no ImageOrientationPatient: slice geometry assumed")

    if colour:
        data = data.reshape(shape[:2] + (n_slices, n_volumes, 3))
    elif n_volumes == 1:
        data = data[:, :, :, 0]
    meta = acquisition_meta(first_ds)
    meta.update(
        {
            "PhotometricInterpretation": "RGB" if colour else first.photometric,
            "PixelSpacing": list(first.spacing),
            "PixelSpacingSource": first.spacing_source,
            "ImageOrientationPatientDICOM": [float(v) for v in iop],
            "NumberOfSlices": geo.n_slices,
            "NumberOfVolumes": n_volumes,
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
    header = first_ds.copy()
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in header:
            delattr(header, keyword)
    return DicomImage(
        data=compact(data), affine=affine, header=header, meta=meta, warnings=warnings
    )


def _assemble_mosaic(frames: list[FrameInfo]) -> DicomImage:
    """Siemens mosaic files (one volume each) via nibabel's CSA-aware wrapper."""
    with pywarnings.catch_warnings():
        # nibabel warns on import that its DICOM readers are experimental; this use (Siemens
        # mosaic) is the one they are made and tested for.
        pywarnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers

    volumes = []
    affine = None
    first_ds = None
    for info in sorted(frames, key=_time_order):
        ds, _ = _decode(info.path, header=True)
        assert ds is not None  # header=True always returns the dataset
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore")
            try:
                wrapper = dicomwrappers.wrapper_from_data(ds)
                # nibabel: (row, column, slice) with the affine's first axis down a column.
                volume = np.asarray(wrapper.get_data(), dtype=np.float64).transpose(1, 0, 2)
                lps = np.asarray(wrapper.affine, dtype=float)[:, [1, 0, 2, 3]]
            except Exception as exc:  # nibabel raises several types for odd CSA headers
                raise DicomReadError(f"{info.path.name}: cannot unpack mosaic: {exc}") from exc
        if affine is None:
            affine, first_ds = lps, ds
        elif not np.allclose(affine, lps, atol=1e-3):
            raise DicomReadError(f"{info.path.name}: mosaic geometry differs within the series")
        volumes.append(volume)
    assert first_ds is not None and affine is not None  # frames is not empty
    data = np.stack(volumes, axis=-1) if len(volumes) > 1 else volumes[0]
    meta = acquisition_meta(first_ds)
    spacing, source = pixel_spacing(first_ds)
    meta.update(
        {
            "PhotometricInterpretation": frames[0].photometric,
            "PixelSpacing": list(spacing),
            "PixelSpacingSource": source,
            "ImageOrientationPatientDICOM": list(frames[0].orientation()),
            "NumberOfSlices": int(data.shape[2]),
            "NumberOfVolumes": len(volumes),
            "SliceStep": float(np.linalg.norm(affine[:3, 2])),
            "Mosaic": True,
        }
    )
    header = first_ds.copy()
    del header.PixelData
    return DicomImage(
        data=compact(data), affine=geometry.LPS_TO_RAS @ affine, header=header, meta=meta
    )


def compact(data: np.ndarray) -> np.ndarray:
    """The smallest exact storage type: int16/uint16 for whole numbers in range, else float32."""
    if data.dtype == np.uint8:
        return data
    if data.size and np.all(np.isfinite(data)) and np.array_equal(data, np.round(data)):
        lo, hi = float(data.min()), float(data.max())
        for dtype in (np.int16, np.uint16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return data.astype(dtype)
    return data.astype(np.float32)


#: (DICOM keyword, sidecar key, factor): acquisition facts copied to the sidecar. Times in
#: DICOM are ms; BIDS wants seconds. Nothing here identifies a patient.
_ACQUISITION_FIELDS = (
    ("Modality", "Modality", None),
    ("Manufacturer", "Manufacturer", None),
    ("ManufacturerModelName", "ManufacturersModelName", None),
    ("MagneticFieldStrength", "MagneticFieldStrength", 1.0),
    ("BodyPartExamined", "BodyPartExamined", None),
    ("PatientPosition", "PatientPosition", None),
    ("SeriesDescription", "SeriesDescription", None),
    ("ProtocolName", "ProtocolName", None),
    ("SeriesNumber", "SeriesNumber", None),
    ("ScanningSequence", "ScanningSequence", None),
    ("SequenceVariant", "SequenceVariant", None),
    ("MRAcquisitionType", "MRAcquisitionType", None),
    ("SliceThickness", "SliceThickness", 1.0),
    ("SpacingBetweenSlices", "SpacingBetweenSlices", 1.0),
    ("EchoTime", "EchoTime", 0.001),
    ("RepetitionTime", "RepetitionTime", 0.001),
    ("InversionTime", "InversionTime", 0.001),
    ("FlipAngle", "FlipAngle", 1.0),
    ("KVP", "KVP", 1.0),
    ("ConvolutionKernel", "ConvolutionKernel", None),
    ("GantryDetectorTilt", "GantryDetectorTilt", 1.0),
    ("ImageType", "ImageType", None),
    ("BitsStored", "BitsStored", None),
    ("RescaleSlope", "RescaleSlope", 1.0),
    ("RescaleIntercept", "RescaleIntercept", 1.0),
    ("WindowCenter", "WindowCenter", 1.0),
    ("WindowWidth", "WindowWidth", 1.0),
    ("VOILUTFunction", "VOILUTFunction", None),
    ("BurnedInAnnotation", "BurnedInAnnotation", None),
    ("SOPClassUID", "SOPClassUID", None),
)


def acquisition_meta(ds: Dataset) -> dict[str, Any]:
    """BIDS-like, non-identifying acquisition facts of a dataset (units: s, mm, degrees, T)."""
    meta: dict[str, Any] = {}
    for keyword, key, factor in _ACQUISITION_FIELDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if factor is not None:
            numbers = number_list(ds, keyword) or []
            if not numbers:
                continue  # text in a numeric attribute: left out, never fatal
            meta[key] = [v * factor for v in numbers] if len(numbers) > 1 else numbers[0] * factor
        elif isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            meta[key] = [str(v) for v in value]
        elif isinstance(value, int):
            meta[key] = int(value)
        else:
            meta[key] = str(value)
    if "SeriesNumber" in meta:
        meta["SeriesNumber"] = _int(meta["SeriesNumber"])
    if "VOILUTSequence" in ds:
        meta["VOILUTSequence"] = True
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID", "") if file_meta is not None else ""
    meta["TransferSyntaxUID"] = str(syntax)
    return meta
