"""Vendor mosaic files (several slices tiled in one frame), split into slices.

Siemens mosaics go through nibabel's CSA-aware wrapper (the number of slices and the slice
positions are in the CSA header). United Imaging (UIH) writes a "VFRAME" grid: ImageType
contains VFRAME, the number of tiles is in its private (0065,xx50) and each tile's own
position, time and geometry in the private MRVFrameSequence (0065,xx51), whose items follow
the tiles in row-major order. The header's ImagePositionPatient is the first tile's (checked
against dcm2niix v1.0.20260724, which places UIH grids so); the tiles' own positions give the
others relative to it, and without them the slices follow along the normal,
SpacingBetweenSlices (else SliceThickness) apart.
"""

from __future__ import annotations

import math
import warnings as pywarnings

import numpy as np
from pydicom.dataset import Dataset

from medcnn.io import geometry
from medcnn.io.dicom import DicomImage, DicomReadError, number_list, pixel_spacing, read_header
from medcnn.io.dicom_decode import decode_file
from medcnn.io.dicom_frames import FrameInfo, diffusion_table, time_order
from medcnn.io.dicom_meta import acquisition_meta, compact, siemens_csa


def assemble_mosaic(frames: list[FrameInfo]) -> DicomImage:
    """Mosaic files (one volume each): UIH grids here, Siemens via nibabel."""
    first_ds = read_header(frames[0].path)
    if "VFRAME" in [str(v).upper() for v in (first_ds.get("ImageType") or [])]:
        return assemble_grid(frames)
    with pywarnings.catch_warnings():
        # nibabel warns on import that its DICOM readers are experimental; this use (Siemens
        # mosaic) is the one they are made and tested for.
        pywarnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers

    volumes = []
    affine = None
    first_ds = None
    for info in sorted(frames, key=time_order):
        ds, _ = decode_file(info.path, header=True)
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
        last_ds = ds
    assert first_ds is not None and affine is not None  # frames is not empty
    data = np.stack(volumes, axis=-1) if len(volumes) > 1 else volumes[0]
    meta = acquisition_meta(first_ds)
    # Slice times (CSA MosaicRefAcqTimes, ms, in stored slice order = our k order) of the
    # last volume: the first volume's can be wrong (multiband; dcm2niix avoids it too).
    times = siemens_csa(last_ds).get("MosaicRefAcqTimes")
    if times and len(times) == data.shape[2]:
        meta["SliceTiming"] = [round(t / 1000.0, 6) for t in times]
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
        data=compact(data),
        affine=geometry.LPS_TO_RAS @ affine,
        header=header,
        meta=meta,
        diffusion=_diffusion(sorted(frames, key=time_order)),
    )


def _diffusion(volumes: list[FrameInfo]) -> tuple[np.ndarray, np.ndarray] | None:
    """(b-values, LPS gradients) of mosaic volumes (one file each, in time order)."""
    if all(f.bvalue is None for f in volumes):
        return None
    return diffusion_table(volumes)


UIH_CREATOR = "Image Private Header"


def _uih_block(ds: Dataset) -> int:
    """The private block of UIH's "Image Private Header" in group 0065 (0x10 if unnamed)."""
    for element in range(0x10, 0x100):
        tag = (0x0065, element)
        if tag in ds and str(ds[tag].value).strip() == UIH_CREATOR:
            return element
    return 0x10


def grid_layout(ds: Dataset) -> tuple[int, list[Dataset]]:
    """(number of tiles, per-tile items) of a UIH VFRAME grid.

    Raises:
        DicomReadError: the number of tiles is not stated anywhere.
    """
    block = _uih_block(ds) << 8
    count_tag, sequence_tag = (0x0065, block | 0x50), (0x0065, block | 0x51)
    items: list[Dataset] = []
    for tag in (sequence_tag, count_tag):
        if tag in ds and ds[tag].VR == "SQ":
            items = list(ds[tag].value)
            break
    count = None
    if count_tag in ds and ds[count_tag].VR != "SQ":
        try:
            count = int(float(str(ds[count_tag].value).split("\\")[0]))
        except ValueError:
            count = None
    count = count or len(items)
    if not count:
        raise DicomReadError("VFRAME mosaic without its number of tiles (0065,xx50)")
    return count, items


def assemble_grid(frames: list[FrameInfo]) -> DicomImage:
    """UIH VFRAME mosaic files (one volume per file, in time order) split into slices."""
    volumes = []
    affine = None
    first_ds = None
    positions_from = "tiles"
    slice_times: list[float] | None = None
    for info in sorted(frames, key=time_order):
        ds, pixels = decode_file(info.path, header=True)
        assert ds is not None
        count, items = grid_layout(ds)
        grid = math.ceil(math.sqrt(count))
        rows, columns = int(ds.Rows), int(ds.Columns)
        tile_rows, tile_cols = rows // grid, columns // grid
        if tile_rows * grid != rows or tile_cols * grid != columns:
            raise DicomReadError(
                f"{info.path.name}: {columns}x{rows} mosaic is not a {grid}x{grid} grid"
            )
        iop = np.asarray(info.orientation(), dtype=float)
        normal = geometry.slice_normal(iop)
        # The header's ImagePositionPatient is the first tile's (unlike a Siemens mosaic's,
        # which is the corner of the whole mosaic): dcm2niix places UIH grids so. The
        # tiles' own positions (MRVFrameSequence) give the others relative to it; without
        # them they follow along the normal, SpacingBetweenSlices apart.
        start = info.position()
        tile_positions = [number_list(item, "ImagePositionPatient") for item in items[:count]]
        if len(tile_positions) == count and all(p and len(p) >= 3 for p in tile_positions):
            own = np.array([p[:3] for p in tile_positions], dtype=float)  # type: ignore[index]
            ipps = start + (own - own[0])
        else:
            positions_from = "slice spacing"
            step = info.slice_step or 1.0
            ipps = np.array([start + normal * step * k for k in range(count)])
        raw = np.asarray(pixels, dtype=np.float64).reshape(rows, columns)
        values = raw * info.slope + info.intercept
        tiles = []
        for k in range(count):
            r, c = divmod(k, grid)
            tile = values[r * tile_rows : (r + 1) * tile_rows, c * tile_cols : (c + 1) * tile_cols]
            tiles.append(tile.T)  # (rows, columns) -> (i, j)
        order = np.argsort(ipps @ normal, kind="stable")
        volume = np.stack([tiles[k] for k in order], axis=-1)
        lps = geometry.stack_affine(
            iop, ipps[order[0]], ipps[order[-1]], count, info.spacing, info.slice_step or 1.0
        )
        if affine is None:
            affine, first_ds = lps, ds
            times = [_tile_time(item) for item in items[:count]]
            if len(times) == count and all(t is not None for t in times):
                zero = min(times)  # type: ignore[type-var]
                slice_times = [round(float(times[k] - zero), 6) for k in order]  # type: ignore[operator]
        elif not np.allclose(affine, lps, atol=1e-3):
            raise DicomReadError(f"{info.path.name}: mosaic geometry differs within the series")
        volumes.append(volume)
    assert first_ds is not None and affine is not None
    data = np.stack(volumes, axis=-1) if len(volumes) > 1 else volumes[0]
    meta = acquisition_meta(first_ds)
    meta.update(
        {
            "PhotometricInterpretation": frames[0].photometric,
            "PixelSpacing": list(frames[0].spacing),
            "PixelSpacingSource": frames[0].spacing_source,
            "ImageOrientationPatientDICOM": list(frames[0].orientation()),
            "NumberOfSlices": int(data.shape[2]),
            "NumberOfVolumes": len(volumes),
            "SliceStep": float(np.linalg.norm(affine[:3, 2])),
            "Mosaic": True,
            "MosaicLayout": f"UIH VFRAME grid, slice positions from the {positions_from}",
        }
    )
    if slice_times is not None:
        meta["SliceTiming"] = slice_times
    header = first_ds.copy()
    del header.PixelData
    return DicomImage(
        data=compact(data),
        affine=affine,
        header=header,
        meta=meta,
        diffusion=_diffusion(sorted(frames, key=time_order)),
    )


def _tile_time(item: Dataset) -> float | None:
    """A tile's acquisition time (seconds since midnight) from its item."""
    for keyword in ("AcquisitionDateTime", "AcquisitionTime"):
        value = str(item.get(keyword, "") or "")
        if value:
            text = value[8:] if keyword == "AcquisitionDateTime" else value
            try:
                return int(text[0:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:] or 0)
            except ValueError:
                return None
    return None
