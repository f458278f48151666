from __future__ import annotations

from pathlib import Path

from medcnn.ingest.grouping import describe_split, split_series
from medcnn.io.dicom_series import FrameInfo

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def frame(n: int, z: float, iop=AXIAL, **kw) -> FrameInfo:
    args = dict(
        path=Path(f"f{n:03d}"),
        frame=None,
        rows=4,
        columns=4,
        iop=iop,
        ipp=(0.0, 0.0, z),
        spacing=(1.0, 1.0),
        spacing_source="PixelSpacing",
        instance=n,
    )
    args.update(kw)
    return FrameInfo(**args)


def test_one_volume_is_not_split():
    parts = split_series([frame(n, 2.0 * n) for n in range(5)])
    assert len(parts) == 1 and parts[0].reasons == {}


def test_three_plane_localizer_splits_by_orientation():
    frames = [frame(n, n, iop) for n, iop in enumerate([AXIAL, SAGITTAL, CORONAL] * 3)]
    parts = split_series(frames)
    assert len(parts) == 3
    assert all(set(p.reasons) == {"orientation"} for p in parts)
    assert all(len(p.frames) == 3 for p in parts)
    assert "image orientation" in describe_split(parts[0].reasons)


def test_echoes_and_image_sizes_split():
    frames = [frame(n, n % 3, echo=str(1 + n // 3)) for n in range(6)]
    frames.append(frame(7, 0, rows=8))
    parts = split_series(frames)
    assert [len(p.frames) for p in parts] == [3, 3, 1]
    assert parts[0].reasons == {"image_size": "4x4", "echo": "1"}
    assert parts[2].reasons == {"image_size": "4x8"}


def test_localizer_never_joins_the_volume():
    frames = [frame(n, n) for n in range(4)] + [frame(9, 0.5, localizer=True)]
    parts = split_series(frames)
    assert [p.reasons["localizer"] for p in parts] == ["image", "localizer"]


def test_uneven_repeats_split_by_acquisition():
    # Positions 0..3 acquired once (acquisition 1), then positions 1..2 again (acquisition 2).
    frames = [frame(n, n, acquisition=1) for n in range(4)]
    frames += [frame(10 + n, n, acquisition=2) for n in (1, 2)]
    parts = split_series(frames)
    assert [len(p.frames) for p in parts] == [4, 2]
    assert parts[1].reasons == {"acquisition": "2"}


def test_uneven_repeats_without_acquisition_numbers_split_by_occurrence():
    frames = [frame(n, n) for n in range(4)] + [frame(10 + n, n) for n in (1, 2)]
    parts = split_series(frames)
    assert [len(p.frames) for p in parts] == [4, 2]
    assert parts[1].reasons == {"repeat": "2"}


def test_even_repeats_stay_together_as_a_time_series():
    frames = [frame(n, n % 3) for n in range(9)]
    assert len(split_series(frames)) == 1
