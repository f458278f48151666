"""One :class:`FrameInfo` per 2D frame of a DICOM header (no pixel data is read).

Single-frame files, each frame of an enhanced multi-frame file (functional groups), the
frames of a legacy multi-frame file (time points), and Siemens mosaic files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medcnn.io.dicom import number_list, orientation, pixel_spacing

DEFAULT_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
COLOUR_PHOTOMETRICS = frozenset(
    {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}
)


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


def to_int(value: Any) -> int:
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
        rows=to_int(ds.get("Rows")),
        columns=to_int(ds.get("Columns")),
        instance=to_int(ds.get("InstanceNumber")),
        acquisition=to_int(ds.get("AcquisitionNumber")),
        localizer="LOCALIZER" in image_type,
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        samples=to_int(ds.get("SamplesPerPixel", 1)) or 1,
    )
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        iop = orientation(ds)
        ipp = number_list(ds, "ImagePositionPatient")
        spacing, source = pixel_spacing(ds)
        n_frames = to_int(ds.get("NumberOfFrames", 1)) or 1
        base = FrameInfo(
            path=path,
            frame=None,
            iop=tuple(iop[:6]) if iop and len(iop) >= 6 else None,
            ipp=tuple(ipp[:3]) if ipp and len(ipp) >= 3 else None,  # type: ignore[arg-type]
            spacing=spacing,
            spacing_source=source,
            echo=_text(ds.get("EchoNumbers")) or _text(ds.get("EchoTime")),
            temporal=to_int(ds.get("TemporalPositionIdentifier")),
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
                temporal=to_int(content.get("TemporalPositionIndex")) if content else 0,
                stack=_text(content.get("StackID")) if content else "",
                slope=(number_list(transform, "RescaleSlope") or [1.0])[0],
                intercept=(number_list(transform, "RescaleIntercept") or [0.0])[0],
                **{**common, "instance": index + 1},
            )
        )
    return frames


def time_order(info: FrameInfo) -> tuple:
    return (info.temporal, info.acquisition, info.instance, info.frame or 0, str(info.path))
