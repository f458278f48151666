"""The pixel pass of DICOM ingest: radiographs one file at a time, other series one volume at
a time, each decoded in a bounded worker (:func:`medcnn.io.bounded.run_bounded`) and isolated
(:meth:`Context.isolated`), so one bad file or series never stops the cohort.

A series whose SeriesDescription matches ``ingest.label_series`` is a label map only when its
content says so too: whole non-negative numbers with few distinct values. Otherwise it is
written as an image (with a warning); radiographs are never taken for label maps.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medcnn import __version__
from medcnn.ingest.context import Context, Entry
from medcnn.ingest.dicom_headers import date_fields, deidentify_sidecar, subject_ids
from medcnn.ingest.grouping import describe_split, split_series
from medcnn.ingest.outputs import (
    as_labels,
    check_affine,
    combined_hash,
    grid_problem,
    label_like,
    write_outputs,
)
from medcnn.io.bounded import run_bounded
from medcnn.io.codecs import load_codecs
from medcnn.io.deid import pseudonym
from medcnn.io.dicom import DicomImage, DicomReadError, read_image
from medcnn.io.dicom_frames import time_order
from medcnn.io.dicom_series import AssemblyOptions, FrameInfo, assemble_series, frames_by_position
from medcnn.io.files import sha256_file
from medcnn.io.limits import NATIVE_SYNTAXES
from medcnn.io.rgb import to_rgb24
from medcnn.io.scrub import free_text

log = logging.getLogger("medcnn.ingest.pipeline")


def needs_worker(entries: list[Entry]) -> bool:
    """Whether decoding these files needs the bounded worker: a codec is involved (or the
    syntax is unknown). Native pixel data was already checked against the bytes present and
    the size limit in the header pass, so it is decoded in-process (a fork per series cost
    more than the decode itself). When it does, the codec libraries are loaded here first
    (where ``medcnn ingest`` deferred them), once per process, so that no bounded child has
    to import them again."""
    if any(e.syntax not in NATIVE_SYNTAXES for e in entries):
        load_codecs()
        return True
    return False


class LabelGridError(DicomReadError):
    """A label series whose grid matches no image of its subject and study."""


def convert_projections(members: list[Entry], ctx: Context) -> None:
    """Each radiograph file becomes one ``(columns, rows, 1)`` image (the classic path)."""
    series_uid = members[0].series_uid
    for index, entry in enumerate(members):
        with ctx.isolated([entry.path], "decode"):
            subject, study = subject_ids(entry, ctx)
            series = f"{entry.modality}-{pseudonym(series_uid, ctx.secret, '', 8)}"
            if len(members) > 1:
                series += f"-{index + 1:03d}"
            image = run_bounded(read_image, (entry.path,), ctx.limits, needs_worker([entry]))
            sidecar = {
                **image.meta,
                "SOPInstanceUID": entry.sop_uid,
                "SourceSHA256": sha256_file(entry.path),
                **date_fields(entry, ctx),
            }
            row = write_dicom(ctx, entry, subject, study, series, image, sidecar, np.float32)
            ctx.rows.append(row)
            ctx.converted([entry.path], subject, series)


def convert_volumes(members: list[Entry], ctx: Context, role: str = "image") -> None:
    """One SeriesInstanceUID: split into volumes, then stack each (each part isolated).

    A label series (``role`` mask) whose content is a label map is stored as integers, and
    only when its grid matches an image of the same subject and study (else quarantined).
    """
    by_path = {e.path: e for e in members}
    frames = [f for e in members for f in e.frames]
    with ctx.isolated(by_path, "group"):
        parts = split_series(frames)
        subject, study = subject_ids(members[0], ctx)
    if any(ctx.fates[p].fate == "quarantined" for p in by_path):
        return
    base = f"{members[0].modality}-{pseudonym(members[0].series_uid, ctx.secret, '', 8)}"
    echoes = enhanced_volume_echoes(parts)
    for number, part in enumerate(parts, start=1):
        series = base if len(parts) == 1 else f"{base}-{number:03d}"
        files = sorted({f.path for f in part.frames}, key=lambda p: by_path[p].instance)
        with ctx.isolated(files, "decode"):
            explanation = describe_split(part.reasons)
            if explanation:
                log.info("%s: %s of %d: %s", series, number, len(parts), explanation)
            names = (subject, study, series, number, len(parts))
            _convert_part(ctx, by_path, files, part, names, role, echoes.get(number))


def enhanced_volume_echoes(parts: list[Any]) -> dict[int, int]:
    """EchoNumber by part number for the parts of an enhanced multi-frame series that the
    image component split apart (a Philips B0 map and its magnitude, say): each part's rank
    in the files' volume order, as dcm2niix numbers them.

    dcm2niix (console/nii_dicom.cpp, the ``isScaleOrTEVaries`` test after the frames'
    DimensionIndexValues sort) writes the volumes of an enhanced file that differ in phase /
    real / imaginary, scaling or echo time one by one, numbered as echoes 1, 2, ... in that
    sort order (checked with the PyPI v1.0.20260724: reordering the frames' dimension
    indices swaps the numbers, their EchoNumbers do not matter). Here the volumes are
    ordered by each part's smallest DimensionIndexValues (then first frame). {} when the
    parts are not such a split, or their frames' own echo numbers already tell them apart.
    """
    if len(parts) < 2 or not all("component" in p.reasons for p in parts):
        return {}
    frames = [f for p in parts for f in p.frames]
    if not all(f.enhanced for f in frames):
        return {}
    if len({tuple(sorted({f.echo_number for f in p.frames})) for p in parts}) > 1:
        return {}  # the frames say which echo each part is

    def order(part: Any) -> tuple:
        return min((f.dimension_index, str(f.path), f.frame or 0) for f in part.frames)

    ranked = sorted(range(len(parts)), key=lambda i: order(parts[i]))
    return {index + 1: rank + 1 for rank, index in enumerate(ranked)}


def _convert_part(
    ctx: Context,
    by_path: dict[Path, Entry],
    files: list[Path],
    part: Any,
    names: tuple[str, str, str, int, int],
    role: str,
    echo_number: int | None = None,
) -> None:
    """Decode, check and write one volume of a series (raises on any problem).

    ``names`` is (subject, study, series, part number, number of parts); ``echo_number``
    overrides the header's EchoNumber (:func:`enhanced_volume_echoes`).
    """
    subject, study, series, number, n_parts = names
    ingest = ctx.config["ingest"]
    options = replace(
        ctx.options,
        philips_scaling=ingest.get("philips_scaling", "precise"),
        phase_units=ingest.get("phase_units", "radians"),
    )
    if role != "image":
        options = AssemblyOptions(uneven_spacing=options.uneven_spacing, labels=True)
    members = [by_path[f] for f in files]
    image = run_bounded(assemble_series, (part.frames, options), ctx.limits, needs_worker(members))
    entry = members[0]
    dtype = None
    if role != "image":
        role, dtype = _label_role(ctx, entry, image, (subject, study), len(files))
    for warning in image.warnings:
        log.warning("%s/%s: %s", subject, series, warning)
    sidecar: dict[str, Any] = {
        **image.meta,
        **source_geometry(image, part.frames, by_path),
        "SourceSHA256": combined_hash(files),
        "SourceFiles": len(files),
        **date_fields(entry, ctx),
    }
    if role != "image":
        sidecar["Role"] = role
    if part.reasons:
        sidecar["SeriesSplit"] = {
            "part": number,
            "of": n_parts,
            "by": dict(part.reasons),
            "explanation": describe_split(part.reasons),
        }
    if echo_number is not None:
        sidecar["EchoNumber"] = echo_number
    sources = sorted({f.source_series_uid for f in part.frames if f.source_series_uid})
    if sources:
        # Grouped under a SeriesTime key: the sidecar keeps the first volume's own UID.
        sidecar["SeriesInstanceUID"] = min(part.frames, key=time_order).source_series_uid
    if len(sources) > 1:
        sidecar["SeriesStacking"] = {
            "by": "SeriesTime",
            "series": len(sources),
            "explanation": "Siemens XA classic files: each volume under its own"
            " SeriesInstanceUID, stacked by SeriesTime as dcm2niix does (issue 394)",
        }
    if len(files) == 1:
        sidecar["SOPInstanceUID"] = entry.sop_uid
    diffusion = image.diffusion if role == "image" else None
    if diffusion is not None and not writes_diffusion(*diffusion):
        diffusion = None
    if diffusion is not None and len(diffusion[0]) == 1 and _single_non_epi_ge(image.meta):
        diffusion = None  # geCorrectBvecs: one non-EPI volume is no DWI (dcm2niix issue 449)
    if diffusion is not None:
        sidecar["DiffusionVolumes"] = int(len(diffusion[0]))
        unknown = int(np.isnan(image.diffusion[1]).any(axis=1).sum())
        if unknown:
            # dcm2niix's refusal (it cannot reorient them): no .bvec rather than a wrong one.
            image.warnings.append(
                f"series {image.meta.get('SeriesNumber')} ({series}): the gradient directions"
                f" of {unknown} diffusion volume(s) are unknown (the warning before says why):"
                " .bval written, no .bvec"
            )
    colour = image.data.ndim == 5 and role == "image"
    if colour and ingest.get("colour", "rgb24") == "rgb24":
        # dcm2niix's colour layout: NIfTI RGB24 (datatype 128), no intent.
        image.data = to_rgb24(image.data)
        sidecar["ColourLayout"] = "RGB24"
    row = write_dicom(ctx, entry, subject, study, series, image, sidecar, dtype)
    row["role"] = role
    if colour:
        row["channels"] = 3
    if diffusion is not None:
        write_diffusion(ctx.results / row["path"], image.affine, *diffusion)
    else:
        nii = ctx.results / row["path"]
        stem = nii.name[: -len(".nii.gz")] if nii.name.endswith(".nii.gz") else nii.stem
        for suffix in (".bval", ".bvec"):  # a stale one from an earlier run goes
            nii.with_name(stem + suffix).unlink(missing_ok=True)
    ctx.rows.append(row)
    ctx.converted(files, subject, series)


def _single_non_epi_ge(meta: dict[str, Any]) -> bool:
    """A GE or Canon series whose ScanningSequence has no EP (not EPI)."""
    maker = str(meta.get("Manufacturer", "")).upper()
    if not (maker.startswith("CANON") or "GE" in maker.split()):
        return False
    sequence = meta.get("ScanningSequence", "")
    sequence = sequence if isinstance(sequence, list) else str(sequence).split("\\")
    return not any("EP" in str(v).upper() for v in sequence)


def writes_diffusion(bvals: np.ndarray, gradients: np.ndarray) -> bool:
    """Whether dcm2niix writes .bval/.bvec for these volumes (its nii_SaveDTI): when the
    b-values vary, or all exceed 50 s/mm2, or the first volume has a direction; otherwise
    only when the directions vary and some volume has none (such volumes are b = 0). So a
    GE fMRI series, whose every file carries b = 0 in (0043,1039), gets none."""
    bvals = np.asarray(bvals, dtype=float)
    vectors = np.nan_to_num(np.asarray(gradients, dtype=float), nan=np.inf)
    if len(bvals) == 0:
        return False
    first_has_direction = bool(np.any(vectors[0] != 0))
    if np.any(bvals != bvals[0]) or float(bvals.min()) > 50 or first_has_direction:
        return True
    if not np.any(vectors != vectors[0]):
        return False
    return bool(np.any(np.all(vectors == 0, axis=1)))


def bvecs_in_image_space(affine: np.ndarray, gradients_lps: np.ndarray) -> np.ndarray:
    """FSL/dcm2niix b-vectors (3 x volumes) for a NIfTI with this affine.

    Each gradient (patient LPS) is turned into RAS and expressed along the written voxel
    axes (i, j, k); the i component is negated when the affine's determinant is positive
    (FSL's radiological convention, as dcm2niix writes them). Unit length where non-zero.
    """
    axes = np.asarray(affine, dtype=float)[:3, :3]
    axes = axes / np.linalg.norm(axes, axis=0)
    ras = np.asarray(gradients_lps, dtype=float) * np.array([-1.0, -1.0, 1.0])
    vox = np.linalg.solve(axes, ras.T)
    if np.linalg.det(axes) > 0:
        vox[0] *= -1
    norms = np.linalg.norm(vox, axis=0)
    vox = np.where(norms > 1e-6, vox / np.where(norms > 1e-6, norms, 1.0), 0.0)
    return vox + 0.0


def write_diffusion(
    nii: Path, affine: np.ndarray, bvals: np.ndarray, gradients: np.ndarray
) -> None:
    """``.bval`` (one line) and ``.bvec`` (three lines) next to a diffusion NIfTI, as
    dcm2niix writes them (b-values rounded to whole s/mm2, vectors to 6 digits)."""
    stem = nii.name[: -len(".nii.gz")] if nii.name.endswith(".nii.gz") else nii.stem
    bval_text = " ".join(f"{round(float(b)):d}" for b in bvals) + "\n"
    files = [(".bval", bval_text)]
    if np.isnan(gradients).any():
        # Unknown directions: no .bvec at all rather than a wrong one (a stale one goes).
        nii.with_name(stem + ".bvec").unlink(missing_ok=True)
    else:
        bvec = bvecs_in_image_space(affine, gradients)
        files.append((".bvec", "".join(" ".join(f"{v:.6g}" for v in row) + "\n" for row in bvec)))
    for suffix, text in files:
        target = nii.with_name(stem + suffix)
        if not target.is_file() or target.read_text() != text:
            tmp = target.with_name(target.name + ".part")
            tmp.write_text(text)
            tmp.replace(target)


def _label_role(
    ctx: Context, entry: Entry, image: DicomImage, ids: tuple[str, str], n_files: int
) -> tuple[str, Any]:
    """(role, dtype) of a series named like a label map: ``mask`` when its content is one
    on an image grid, ``image`` when its content is not a label map.

    Raises:
        LabelGridError: a label map whose grid matches no image of its subject and study.
    """
    subject, study = ids
    is_label, why_not = label_like(image.data)
    if not is_label:
        image.warnings.append(
            f"SeriesDescription matches ingest.label_series but the content is not a label map"
            f" ({why_not}): kept as an image"
        )
        return "image", None
    problem = grid_problem(ctx, subject, study, image.data.shape[:3])
    if problem:
        described = free_text(entry.description, entry.phi, ctx.config["deid"]["free_text"])
        raise LabelGridError(f"label series {described!r} ({n_files} files): {problem}")
    image.data, dtype = as_labels(image.data, image.warnings)
    check_affine(ctx, subject, study, image.data.shape[:3], image.affine, image.warnings)
    return "mask", dtype


def source_geometry(
    image: DicomImage, frames: list[FrameInfo], by_path: dict[Path, Entry]
) -> dict[str, Any]:
    """What a DICOM SEG of this volume needs to reference its source slices.

    ``SliceSOPInstanceUIDs`` lists the SOP instance of each NIfTI slice k (one per k); it is
    left out when slices do not map one to one onto files (multi-frame or mosaic files, time
    series, or slices resampled onto a regular grid).
    """
    header = image.header
    out: dict[str, Any] = {}
    for keyword in ("FrameOfReferenceUID", "SOPClassUID"):
        if header is not None and header.get(keyword):
            out[keyword] = str(header.get(keyword))
    iop = image.meta.get("ImageOrientationPatientDICOM")
    if iop is not None:
        out["ImageOrientationPatient"] = [float(v) for v in iop]
    if header is not None and "SliceThickness" not in image.meta:
        thickness = header.get("SliceThickness")
        try:
            if thickness:
                out["SliceThickness"] = float(thickness)
        except (TypeError, ValueError):
            pass
    single = all(f.frame is None and not f.mosaic for f in frames)
    volumes = image.data.shape[3] if image.data.ndim >= 4 else 1
    if single and volumes == 1 and not image.meta.get("Resampled"):
        ordered = frames_by_position(frames)
        if len(ordered) == image.data.shape[2]:
            out["SliceSOPInstanceUIDs"] = [by_path[group[0].path].sop_uid for group in ordered]
    return out


def write_dicom(
    ctx: Context,
    entry: Entry,
    subject: str,
    study: str,
    series: str,
    image: DicomImage,
    sidecar: dict[str, Any],
    dtype: Any,
) -> dict[str, Any]:
    """Write one DICOM-derived image and return its manifest row (labels joined)."""
    sidecar = {
        **sidecar,
        "Subject": subject,
        "Study": study,
        "Series": series,
        "SubjectSource": entry.patient_source,
        "StudyInstanceUID": entry.study_uid,
        "SeriesInstanceUID": sidecar.get("SeriesInstanceUID") or entry.series_uid,
        "Warnings": image.warnings,
        "ConversionSoftware": f"medcnn {__version__}",
        **entry.identifiers,
    }
    sidecar = deidentify_sidecar(sidecar, entry, ctx)
    row = write_outputs(ctx, subject, study, series, image.data, image.affine, sidecar, dtype)
    row["modality"] = entry.modality
    row["source"] = "dicom"
    # Radiograph sidecars carry no SeriesDescription: the manifest still gets it, scrubbed.
    policy = ctx.config["deid"]["free_text"]
    row["description"] = sidecar.get("SeriesDescription") or free_text(
        entry.description, entry.phi, policy
    )
    if ctx.labels:
        found = ctx.labels.get(entry.key_value or "")
        for column in ctx.config["labels"]["columns"]:
            row[column] = found[column] if found else ""
    return row
