"""Split one DICOM series (SeriesInstanceUID) into the volumes dcm2niix would write.

A SeriesInstanceUID often holds more than one volume: a 3-plane localizer, several echoes,
two image sizes, a multi-frame file next to single-frame ones, or the same positions acquired
twice. Each rule below splits a group when its key differs; every part remembers which rules
split it and why, and that explanation goes into the part's sidecar (``SeriesSplit``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medcnn.io import geometry
from medcnn.io.dicom_series import FrameInfo

#: ImageOrientationPatient values are compared after rounding to this many decimals (a
#: direction cosine difference of 1e-3 is about 0.06 degrees).
ORIENTATION_DECIMALS = 3


@dataclass
class SeriesPart:
    """Frames of one output volume and why they were split from their siblings.

    Attributes:
        frames: the frames, in header order.
        reasons: split rule name -> the value that distinguishes this part (empty when the
            series was not split).
    """

    frames: list[FrameInfo]
    reasons: dict[str, str] = field(default_factory=dict)


def _orientation_key(info: FrameInfo) -> str:
    values = np.round(np.asarray(info.orientation(), dtype=float), ORIENTATION_DECIMALS) + 0.0
    return "\\".join(f"{v:g}" for v in values)


def _file_key(info: FrameInfo) -> str:
    # The frames of a legacy multi-frame file (cine, NM, US: no functional groups) are never
    # mixed with other files' frames. Enhanced multi-frame files of one series are stacked
    # together: dcm2niix writes one 4D series (a time series of one volume per file, say),
    # never one file per frame group.
    if info.frame is None:
        return "single-frame files"
    return "enhanced multi-frame files" if info.enhanced else info.path.name


def _component_key(info: FrameInfo) -> str:
    return info.component or "magnitude"


def _diffusion_key(info: FrameInfo) -> str:
    return "derived (isotropic/trace)" if info.derived_diffusion else "acquired"


_RULES: tuple[tuple[str, Callable[[FrameInfo], Any], str], ...] = (
    ("series_number", lambda f: f.series_number, "SeriesNumber"),
    ("multiframe_file", _file_key, "multi-frame file"),
    ("stack", lambda f: f.stack, "stack ID"),
    ("localizer", lambda f: "localizer" if f.localizer else "image", "localizer vs volume"),
    ("image_size", lambda f: f"{f.columns}x{f.rows}", "image size (columns x rows)"),
    ("colour", lambda f: "colour" if f.colour else "grey", "colour vs greyscale"),
    ("orientation", _orientation_key, "image orientation (IOP)"),
    ("component", _component_key, "image component (magnitude, phase, real, field map)"),
    ("echo", lambda f: f.echo, "echo"),
    ("pixel_spacing", lambda f: "x".join(f"{v:g}" for v in f.spacing), "pixel spacing"),
    ("diffusion", _diffusion_key, "derived diffusion image (isotropic/trace) vs acquired"),
)


def _partition(parts: list[SeriesPart], name: str, key: Callable[[FrameInfo], Any]) -> list:
    out: list[SeriesPart] = []
    for part in parts:
        buckets: dict[Any, list[FrameInfo]] = defaultdict(list)
        for info in part.frames:
            buckets[key(info)].append(info)
        if len(buckets) == 1:
            out.append(part)
            continue
        for value, frames in sorted(buckets.items(), key=lambda kv: _first_instance(kv[1])):
            # A file name may carry a patient's name: the reason never repeats it.
            shown = "separate file" if value == info_name(frames[0]) else str(value)
            out.append(SeriesPart(frames, {**part.reasons, name: shown}))
    return out


def info_name(info: FrameInfo) -> str:
    """The file name of a legacy multi-frame file's frames (never shown: it may name a
    patient); "" for other frames."""
    return info.path.name if info.frame is not None and not info.enhanced else ""


def _first_instance(frames: list[FrameInfo]) -> tuple:
    return min((f.instance, str(f.path), f.frame or 0) for f in frames)


def _repeat_counts(frames: list[FrameInfo]) -> Counter:
    normal = geometry.slice_normal(frames[0].orientation())
    rounded = [round(float(np.dot(f.position(), normal)) / 0.01) for f in frames]
    return Counter(rounded)


def _split_repeats(part: SeriesPart) -> list[SeriesPart]:
    """Split positions that repeat unevenly: by AcquisitionNumber, else by occurrence."""
    if part.frames[0].mosaic or len({*_repeat_counts(part.frames).values()}) <= 1:
        return [part]
    by_acquisition = _partition([part], "acquisition", lambda f: f.acquisition)
    if all(len({*_repeat_counts(p.frames).values()}) <= 1 for p in by_acquisition):
        return by_acquisition
    # Still uneven: the n-th acquisition of each position goes to part n (e.g. a slab that
    # was repeated after motion), as dcm2niix writes repeated positions to separate files.
    normal = geometry.slice_normal(part.frames[0].orientation())
    seen: Counter = Counter()
    occurrence: dict[int, int] = {}
    for info in sorted(part.frames, key=lambda f: (f.instance, str(f.path), f.frame or 0)):
        position = round(float(np.dot(info.position(), normal)) / 0.01)
        seen[position] += 1
        occurrence[id(info)] = seen[position]
    return _partition([part], "repeat", lambda f: occurrence[id(f)])


def split_series(frames: list[FrameInfo]) -> list[SeriesPart]:
    """Split the frames of one SeriesInstanceUID into volumes.

    Args:
        frames: every frame of the series (any order).

    Returns:
        the parts, ordered by their first InstanceNumber; one part with empty ``reasons``
        when the series is one volume.
    """
    parts = [SeriesPart(list(frames))]
    for name, key, _ in _RULES:
        parts = _partition(parts, name, key)
    out: list[SeriesPart] = []
    for part in parts:
        out.extend(_split_repeats(part))
    return out


def describe_split(reasons: dict[str, str]) -> str:
    """A sentence for the sidecar and the log, e.g. ``split by echo (2)``."""
    labels = {name: text for name, _, text in _RULES}
    labels.update({"acquisition": "acquisition number", "repeat": "repeated slice positions"})
    return "; ".join(f"split by {labels.get(k, k)} ({v})" for k, v in reasons.items())
