"""Segmentation on real data, against no-learning baselines computed in the same run.

    PYTHONPATH=. python bench/segmentation.py [--data ../shared/data] [--only nuclei|brats]
        [--nuclei-minutes 60] [--nuclei-variants full] [--brats-cpu-minutes 60] [--threads 2]
        [--device cpu]

**CPU budget.** Nuclei train for at most ``--nuclei-minutes`` (60) of a 2-core CPU:
``--threads 2`` torch threads, and the budget counted in this process's CPU seconds divided by
the threads (``train_segmenter(clock="cpu")``), i.e. the minutes the run would take on two cores
of its own; on a machine shared with other jobs the wall clock runs longer, and is printed
beside it. Validation, prediction and the baselines are outside the training budget (their
times are printed too).

**Nuclei** (``nuclei_dsb2018``: ``<case>/images/<case>.png``, ``<case>/masks/*.png`` one binary
mask per nucleus) go through the workflow itself: a configuration validated by the schema (the
instance task below, every other key the schema's default), the ingest stage, and per fold the
preprocess stage (plans and the training profile from the fold's training images only), the
train stage (which also chooses the watershed settings, ``segmentation.watershed``, on the
fold's validation images) and the predict stage's ``segment_image`` and ``nuclei_quality``.
``--nuclei-folds`` (3) folds over all images, stratified by image type found from the pixels
(:func:`medcnn.transforms.nuclei.image_type`: fluorescence, colour, light-background grey);
in each fold a tenth of the training images of each type (types with five or more) validates.
The budget ``--nuclei-minutes`` is shared by the folds. Metrics per held-out image (Dice of
the foreground, AJI, PQ, F1 at IoU 0.5), means overall and per type, beside two no-learning
baselines: Otsu threshold of the grey image (the minority side of the threshold is nuclei, so
dark nuclei on a bright field work too) + connected components, and the same mask split by a
distance-transform watershed (:func:`~medcnn.postprocess.instances.instances_from_mask`).
The watershed-choice ablation (``--no-nuclei-choice-ablation`` leaves it out) re-chooses the
watershed on each fold's validation images for each score it can maximise (AJI, PQ, F1@0.5;
:data:`CHOICE_SCORES`), over the configured thresholds and over :data:`WIDE_THRESHOLDS`, and
applies each choice to the same held-out probabilities (``watershed by <score>[, wide]``
rows; the configured score's row equals the main one).
``--nuclei-variants full no_rescale rgb`` is the ablation (:data:`NUCLEI_VARIANTS`): the
schema's nuclei handling, without the per-image rescaling, and the previous release's RGB
z-score without it. ``--nuclei-run-folds k`` runs one fold (folds as separate processes with
one ``--work``: the first ingests, the others wait on a lock for its manifest),
``--nuclei-collect`` prints the table of what they wrote.

On a GPU: ``--device cuda`` (the budget is then wall-clock minutes), ``--nuclei-batch 32``
and ``--nuclei-features 32``; in a workflow ``device: cuda``, ``resources.train.gpu: 1``,
``train.batch_size``, ``segmentation.features`` and ``train.max_minutes`` (``train.clock:
wall``).

**BraTS** (``brats2018``: every case folder with FLAIR, T1 and the whole-tumour mask
``GT_W``; six in the dev set). Leave one case out over every case, in one run: per fold,
plans from the five training cases only, and two networks on FLAIR + T1 at 2 mm:

- the 3D U-Net on 3D patches (``--brats-patch``, 64 cubed), and
- the 2D slice U-Net (``segmentation.slices``: axial slices, ``--brats-context`` 1 slice on
  either side as extra channels, slices with tumour drawn half of the time, 96 x 96 patches
  of the 120 x 120 slices, batch 8, 32 first-level features), predicted slice by slice;

each held-out prediction is brought back to the 1 mm ingest grid (probabilities linearly),
and the ensemble is the mean of the two networks' tumour probabilities there. Every mask
keeps its largest connected component (``segmentation.largest_component: true``; Dice
without it is printed too). Whole-tumour Dice and HD95 (mm) per held-out case and their
means, beside the baseline: FLAIR z-score (inside the non-zero brain) > 1.5, largest
connected component; its Dice at thresholds 0.8-2 is printed too (the contrast at which
each case's annotated boundary lies).

**BraTS budget.** ``--brats-cpu-minutes`` (60) is the training time of all networks and all
folds together in **CPU-minutes**: user + system CPU seconds of this process / 60 (all its
threads together), so a run on cores shared with other jobs trains exactly as much as on
idle ones, only later. ``--brats-share-2d`` (0.75) of it goes to the 2D U-Net, the rest to
the 3D; each network's share is divided equally between the folds (``train_segmenter``'s
``clock="cpu"`` counts CPU seconds / threads, so each fold is given share / folds / threads
of those). Folds can run as separate processes (``--brats-held case_4 case_5`` with a
``--work`` of their own) and be tabulated together (``--brats-collect WORK ...``); a
stopped run re-evaluates its finished folds with ``--reuse-models``. Run it with
``--threads 1`` on a busy machine (a second thread adds less work per
CPU second than it costs). Preprocessing, prediction and the baseline are outside the
budget; their times are printed.

On a GPU: ``--device cuda`` makes the budget wall-clock minutes (the same 60 train each
network many times longer), e.g. ``--device cuda --brats-cpu-minutes 30 --brats-batch-2d 32
--brats-features-2d 64 --brats-patch-2d 128 128 --brats-patch 96 96 96``; in a workflow
``device: cuda``, ``resources.train.gpu: 1``, ``train.batch_size``, ``segmentation.features``
and ``train.max_minutes`` with ``train.clock: wall``.

BraTS goes through the library the workflow uses: ``make_seg_plans``,
``preprocess_case``, ``train_segmenter``, ``load_models``/``predict_labels``. The table is
printed and written to ``segmentation.txt`` (and the command to ``segmentation.json``) in the
``--work`` folder; ``--out bench/results/segmentation.txt`` replaces the committed table, which
no run does unless asked (a smoke run once overwrote it). Without the data folder the script
says so and exits 0. Nothing from the data folder is written into the repository.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medcnn.inference.segmentation import (  # noqa: E402
    choose_postprocessing_by,
    labels_from_probabilities,
    load_models,
    predict_probabilities,
)
from medcnn.metrics.instances import instance_metrics  # noqa: E402
from medcnn.metrics.segmentation import dice, hd95  # noqa: E402
from medcnn.planning.segmentation import make_seg_plans  # noqa: E402
from medcnn.postprocess.components import keep_largest  # noqa: E402
from medcnn.postprocess.instances import instances_from_mask  # noqa: E402
from medcnn.train.segmenter import train_segmenter  # noqa: E402
from medcnn.transforms.segmentation import preprocess_case  # noqa: E402

log = logging.getLogger("bench.segmentation")

SEED = 0
NUCLEI_TARGETS = {"dice": 0.90, "aji": 0.72, "pq": 0.70, "f1": 0.88}
#: The issue-21 target: mean whole-tumour Dice of the U-Net of Dong et al. (MIUA 2017).
BRATS_TARGET = 0.86


def train_or_reuse(
    train_items: list[dict[str, Any]],
    val_items: list[dict[str, Any]],
    plans: dict[str, Any],
    task: dict[str, Any],
    fold: Path,
    args: argparse.Namespace,
    minutes: float,
) -> dict[str, Any]:
    """``train_segmenter`` within the budget, or with ``--reuse-models`` the fold's finished
    bundle (to re-evaluate without retraining)."""
    if args.reuse_models and (fold / "bundle.json").is_file():
        return json.loads((fold / "metrics.json").read_text())
    return train_segmenter(
        train_items,
        val_items,
        plans,
        task,
        fold,
        device=args.device,
        threads=args.threads,
        max_minutes=minutes,
        clock="cpu" if args.device == "cpu" else "wall",
    )


# --------------------------------------------------------------------------------------------
# Nuclei


#: The nuclei settings the ablation compares (``segmentation:`` keys over the bench task's):
#: ``full`` is the schema's defaults (one grey channel with nuclei bright, each image resized
#: to 20-pixel nuclei); ``no_rescale`` keeps each image at its own scale; ``rgb`` is the
#: previous release's handling (three z-scored colour channels, colour jitter and random
#: inversion in training, no resizing).
NUCLEI_VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_rescale": {"nucleus_diameter": None},
    "rgb": {"nucleus_diameter": None, "normalisation": "rgb"},
}
NUCLEI_TYPES = ("fluorescence", "colour", "light_grey")
#: The watershed-choice ablation (first variant only): each score the choice can maximise,
#: over the configured thresholds and over this wider grid of them (the other settings as
#: configured), chosen on each fold's validation images and applied to the same held-out
#: probabilities.
WIDE_THRESHOLDS = {
    "interior_threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95],
    "foreground_threshold": [0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9],
}
CHOICE_SCORES = ("aji", "pq", "f1")
TASK = "nuclei"


def nuclei_task(args: argparse.Namespace, variant: str, minutes: float) -> dict[str, Any]:
    """The instance task the benchmark trains, in the configuration's own keys (the schema
    fills in every other one)."""
    return {
        "kind": "instance_segmentation",
        "dims": 2,
        "modalities": ["SM"],
        "segmentation": {
            "classes": ["nucleus"],
            "touching_class": args.nuclei_touching,
            "patch_size": list(args.nuclei_patch),
            "samples_per_image": 2,
            "positive_fraction": 1 / 3,
            "features": args.nuclei_features,
            "overlap": args.nuclei_overlap,
            "watershed": {
                "interior_threshold": args.nuclei_interior,
                "foreground_threshold": args.nuclei_foreground,
                **({"score": args.nuclei_score} if args.nuclei_score else {}),
            },
            **NUCLEI_VARIANTS[variant],
        },
        "train": {
            "epochs": 10_000,  # the time budget ends training
            "iterations_per_epoch": 50,
            "batch_size": args.nuclei_batch,
            "learning_rate": 2e-3,
            "max_minutes": minutes,
            "clock": "cpu" if args.device == "cpu" else "wall",
            "seed": SEED,
        },
    }


def nuclei_config(results: Path, source: Path, task: dict[str, Any], device: str) -> dict:
    """A workflow configuration (validated: the schema's defaults filled in) with the DSB
    folder as its input and the one nuclei task."""
    from medcnn.config import validate_config

    return validate_config(
        {
            "results": str(results),
            "logs": str(results.parent / "logs"),
            "inputs": [
                {
                    "path": str(source),
                    "pattern": "(?P<subject>[^/]+)/",
                    "modality": "SM",
                    "instances": "/masks/",
                }
            ],
            "deid": {"secret": "medcnn-bench"},
            "device": "cuda" if device.startswith("cuda") else device,
            "tasks": {TASK: task},
        }
    )


def ingest_nuclei(config: dict[str, Any]) -> list[dict[str, str]]:
    """The ingest stage over the DSB folder; each subject's image and instance rows with its
    image type (from the pixels)."""
    import pandas as pd

    from medcnn.stages.ingest import run as run_ingest
    from medcnn.stages.predict.segmentation import intensity_image
    from medcnn.transforms.nuclei import image_type

    results = Path(config["results"])
    manifest_path = results / "ingest" / "manifest.tsv"
    results.mkdir(parents=True, exist_ok=True)
    # Several processes may share one --work (--nuclei-run-folds): the first ingests, the
    # others wait for it and read its manifest (two ingests into one folder lose cases).
    with open(results / ".ingest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest_path.is_file():
            run_ingest(config)
    manifest = pd.read_csv(manifest_path, sep="\t", dtype=str, keep_default_na=False)
    cases = []
    for subject, rows in manifest.groupby("subject"):
        image = rows[rows["role"].isin(["", "image"])]
        label = rows[rows["role"] == "instances"]
        if len(image) != 1 or len(label) != 1:
            log.warning(
                "%s: %d images, %d instance maps; left out", subject, len(image), len(label)
            )
            continue
        path = results / image.iloc[0]["path"]
        data = intensity_image(nib.load(path))
        channels = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
        cases.append(
            {
                "subject": str(subject),
                "image": str(path),
                "label": str(results / label.iloc[0]["path"]),
                "type": image_type(channels),
            }
        )
    return cases


def stratified_folds(cases: list[dict[str, str]], k: int, seed: int) -> list[list[str]]:
    """``k`` folds of subjects, each image type dealt round the folds in a seeded order."""
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    turn = 0
    for kind in NUCLEI_TYPES:
        subjects = sorted(c["subject"] for c in cases if c["type"] == kind)
        for s in rng.permutation(subjects):
            folds[turn % k].append(str(s))
            turn += 1
    return [sorted(f) for f in folds]


def validation_subjects(cases: list[dict[str, str]], train: list[str], seed: int) -> list[str]:
    """About a tenth of a fold's training subjects, per image type (none of a type with
    fewer than five), for model selection and the watershed settings."""
    rng = np.random.default_rng(seed + 1)
    types = {c["subject"]: c["type"] for c in cases}
    val: list[str] = []
    for kind in NUCLEI_TYPES:
        subjects = sorted(s for s in train if types[s] == kind)
        if len(subjects) >= 5:
            val += [str(s) for s in rng.permutation(subjects)[: max(1, round(0.1 * len(subjects)))]]
    return sorted(val)


def fold_results(shared: Path, results: Path, keep: set[str]) -> None:
    """A fold's results folder: the shared ingest (linked) with a manifest of only the fold's
    training subjects, so planning and the training fingerprint never see a held-out image."""
    ingest = results / "ingest"
    ingest.mkdir(parents=True, exist_ok=True)
    for entry in (shared / "ingest").iterdir():
        link = ingest / entry.name
        if entry.name != "manifest.tsv" and not link.exists():
            link.symlink_to(entry.resolve())
    lines = (shared / "ingest" / "manifest.tsv").read_text().splitlines()
    column = lines[0].split("\t").index("subject")
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.split("\t")[column] in keep]
    (ingest / "manifest.tsv").write_text("\n".join(kept) + "\n")


def run_nuclei_fold(
    cases: list[dict[str, str]],
    held: list[str],
    fold: int,
    variant: str,
    shared: Path,
    work: Path,
    args: argparse.Namespace,
    minutes: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Plan, preprocess and train on the other folds through the workflow's stages (the
    watershed settings chosen on validation subjects inside them), then segment the held-out
    fold with the predict stage's function; each held-out image's scores and flags."""
    from medcnn.models.bundle import load_bundle
    from medcnn.stages.predict.segmentation import nuclei_quality, segment_image
    from medcnn.stages.preprocess.segmentation import run_preprocess_segmentation
    from medcnn.stages.train.segmentation import run_train_segmentation

    results = work / variant / f"fold{fold}" / "results"
    train_all = sorted(c["subject"] for c in cases if c["subject"] not in set(held))
    val = validation_subjects(cases, train_all, SEED + fold)
    train = sorted(set(train_all) - set(val))
    config = nuclei_config(
        results, args.data / "nuclei_dsb2018", nuclei_task(args, variant, minutes), args.device
    )
    task = config["tasks"][TASK]
    bundle_dir = results / "models" / TASK / "fold0"
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if not (args.reuse_models and (bundle_dir / "bundle.json").is_file()):
        fold_results(shared, results, set(train_all))
        run_preprocess_segmentation(config, TASK)
        split = {
            "task": TASK,
            "seed": SEED,
            "test": sorted(held),
            "unlabeled": [],
            "folds": [{"train": train, "val": val}],
            "strata": {},
        }
        (results / "splits").mkdir(parents=True, exist_ok=True)
        (results / "splits" / f"{TASK}.json").write_text(json.dumps(split, indent=2) + "\n")
        run_train_segmentation(config, TASK, 0, threads=args.threads)
    elif "postprocess" not in json.loads((bundle_dir / "bundle.json").read_text()):
        # a bundle whose run stopped after training: the watershed settings, as the train
        # stage chooses them, on the fold's validation images
        from medcnn.data.index import read_index
        from medcnn.stages.train.segmentation import choose_fold_postprocessing

        index = read_index(results / "preprocess" / TASK / "index.tsv").to_dict("records")
        split = json.loads((results / "splits" / f"{TASK}.json").read_text())
        choose_fold_postprocessing(
            results, [r for r in index if r["label"]], split, 0, bundle_dir, args.device, task
        )
    fit_cpu, fit_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    model, bundle = load_bundle(bundle_dir)
    model = model.to(torch.device(args.device))
    metrics = json.loads((bundle_dir / "metrics.json").read_text())
    history = _read_history(bundle_dir / "history.csv")
    by_subject = {c["subject"]: c for c in cases}
    choices = (
        watershed_choices(model, bundle, task, [by_subject[s] for s in val], args)
        if variant == args.nuclei_variants[0] and args.nuclei_choice_ablation
        else {}
    )
    rows = []
    t_pred = time.perf_counter()
    # the rarer kinds first: a run stopped early has scores of every kind
    order = {kind: k for k, kind in enumerate(("light_grey", "colour", "fluorescence"))}
    for subject in sorted(held, key=lambda s: (order[by_subject[s]["type"]], s)):
        case = by_subject[subject]
        label_img, meta, prob = segment_image(
            [model], bundle, task, Path(case["image"]), args.device, with_probabilities=True
        )
        pred = np.asarray(label_img.dataobj)[..., 0].astype(np.int64)
        ref = np.asarray(nib.load(case["label"]).dataobj)[..., 0].astype(np.int64)
        quality = nuclei_quality(bundle["plans"], nib.load(case["image"]), meta)
        row = {
            "variant": variant,
            "fold": fold,
            "subject": subject,
            "type": case["type"],
            "model": instance_metrics(pred, ref),
            "diameter": quality["nucleus_diameter_px"],
            "diameter_source": quality["diameter_source"],
            "flags": quality["quality_flags"],
        }
        if choices:
            min_size = int(task["segmentation"]["min_size"])
            row["choices"] = {
                name: instance_metrics(
                    labels_from_probabilities(prob, bundle["plans"], {**c, "min_size": min_size}),
                    ref,
                )
                for name, c in choices.items()
            }
        if variant == args.nuclei_variants[0]:
            grey = grey_of(case["image"])
            row["otsu_cc"] = instance_metrics(otsu_components(grey), ref)
            row["otsu_ws"] = instance_metrics(instances_from_mask(otsu_mask(grey)), ref)
        rows.append(row)
        with open(work / "rows.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
    touching = [h.get("val_dice_touching") for h in history if h.get("val_dice_touching")]
    summary = {
        "variant": variant,
        "fold": fold,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(held),
        "train_minutes": metrics["train_seconds"] / 60,
        "clock": metrics["clock"],
        "train_threads": metrics.get("threads"),
        "train_wall_minutes": metrics["train_wall_seconds"] / 60,
        "fit_cpu_minutes": fit_cpu / 60,
        "fit_wall_minutes": fit_wall / 60,
        "epochs": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "val_dice": metrics["val_dice"],
        "max_val_dice_touching": max((float(t) for t in touching), default=None),
        "precision": metrics.get("precision"),
        "compile": compile_summary(metrics.get("compile_info")),
        "postprocess": bundle.get("postprocess"),
        "patch": bundle["plans"]["patch_size"],
        "channels": bundle["plans"]["network"].get("channels"),
        "profile_types": (bundle["plans"].get("nuclei_profile") or {}).get("types"),
        "predict_wall_s": time.perf_counter() - t_pred,
        "choices": choices,
    }
    with open(work / "folds.jsonl", "a") as fh:
        fh.write(json.dumps(summary, default=str) + "\n")
    return summary, rows


def watershed_choices(
    model: torch.nn.Module,
    bundle: dict[str, Any],
    task: dict[str, Any],
    val_cases: list[dict[str, str]],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """The watershed settings each of :data:`CHOICE_SCORES` chooses on the fold's validation
    images, over the configured thresholds and over :data:`WIDE_THRESHOLDS`, as the train
    stage chooses them (its grid, its probabilities): ``{"aji" | "aji, wide": settings}``."""
    from medcnn.stages.train.segmentation import validation_probabilities, watershed_grid

    probabilities, references = validation_probabilities(
        model,
        bundle["plans"],
        task,
        [(Path(c["image"]), Path(c["label"])) for c in val_cases],
        args.device,
    )
    grid = watershed_grid(task["segmentation"])
    choices = {}
    for suffix, g in (("", grid), (", wide", {**grid, **WIDE_THRESHOLDS})):
        chosen = choose_postprocessing_by(probabilities, references, g, CHOICE_SCORES)
        choices.update({f"{score}{suffix}": settings for score, (settings, _) in chosen.items()})
    return choices


def _read_history(path: Path) -> list[dict[str, Any]]:
    import csv

    if not path.is_file():
        return []
    with open(path) as fh:
        return [
            {k: (float(v) if v not in ("", None) and _is_number(v) else v) for k, v in r.items()}
            for r in csv.DictReader(fh)
        ]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def grey_of(image_path: str) -> np.ndarray:
    """``(i, j)`` grey image of an ingest tile (mean of the colour channels)."""
    from medcnn.stages.predict.segmentation import intensity_image

    data = intensity_image(nib.load(image_path))
    return data.mean(axis=-1) if data.ndim == 3 else data


def otsu_mask(grey: np.ndarray) -> np.ndarray:
    """Otsu's threshold; nuclei are the minority side (bright in fluorescence, dark in
    brightfield and histology)."""
    from skimage.filters import threshold_otsu

    mask = grey > threshold_otsu(grey)
    return ~mask if mask.mean() > 0.5 else mask


def otsu_components(grey: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    return label(otsu_mask(grey), connectivity=1).astype(np.int32)


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in ("dice", "aji", "pq", "f1")}


def collect_nuclei(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The table's inputs from the ``rows.jsonl``/``folds.jsonl`` that runs with
    ``--work`` wrote (folds run as separate processes, ``--nuclei-run-folds k``)."""
    rows = [json.loads(x) for x in (work / "rows.jsonl").read_text().splitlines() if x]
    summaries = [json.loads(x) for x in (work / "folds.jsonl").read_text().splitlines() if x]
    keep = set(args.nuclei_variants)
    cases = json.loads((work / "cases.json").read_text())
    return {
        "cases": cases,
        "folds": None,
        "summaries": sorted(
            (s for s in summaries if s["variant"] in keep), key=lambda s: (s["variant"], s["fold"])
        ),
        "rows": [x for x in rows if x["variant"] in keep],
        "total_s": float("nan"),
    }


def held_subset(cases: list[dict[str, str]], held: list[str], n_fluorescence: int) -> list[str]:
    """A fold's held-out colour and light-background images and its first ``n_fluorescence``
    fluorescence ones (sorted order): the ablation's cheaper evaluation set."""
    types = {c["subject"]: c["type"] for c in cases}
    fluorescence = [s for s in held if types[s] == "fluorescence"][:n_fluorescence]
    return sorted([s for s in held if types[s] != "fluorescence"] + fluorescence)


def run_nuclei(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if args.nuclei_collect:
        return collect_nuclei(work, args)
    t0 = time.perf_counter()
    shared = work / "shared" / "results"
    ingest_config = nuclei_config(
        shared, data / "nuclei_dsb2018", nuclei_task(args, "full", 1.0), args.device
    )
    cases = ingest_nuclei(ingest_config)
    (work / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    folds = stratified_folds(cases, args.nuclei_folds, SEED)
    minutes = args.nuclei_minutes / args.nuclei_folds
    summaries, rows = [], []
    for variant in args.nuclei_variants:
        for k, held in enumerate(folds):
            if args.nuclei_held_fluorescence is not None:
                held = held_subset(cases, held, args.nuclei_held_fluorescence)
            if args.nuclei_run_folds is not None and k not in args.nuclei_run_folds:
                continue
            summary, fold_rows = run_nuclei_fold(
                cases, held, k, variant, shared, work, args, minutes
            )
            summaries.append(summary)
            rows += fold_rows
    return {
        "cases": cases,
        "folds": folds,
        "summaries": summaries,
        "rows": rows,
        "total_s": time.perf_counter() - t0,
    }


def compile_summary(info: dict | None) -> str | None:
    """``train.compile``'s decision in a few words (None: a fold from before the setting)."""
    if not info:
        return None
    state = "compiled" if info.get("compiled") else "eager"
    seconds = info.get("seconds")
    timed = (
        f" {seconds['eager'] / seconds['compiled']:.2f}x" if seconds and seconds["compiled"] else ""
    )
    return f"{state}{timed}, {info.get('budget_seconds', 0):.0f} s of the budget to decide"


def _train_threads(summary: dict[str, Any], args: argparse.Namespace) -> int:
    """The threads a fold trained with (its metrics.json), not this run's: a ``--reuse-models``
    re-evaluation may run with other threads than the training did."""
    return int(summary.get("train_threads") or args.threads)


def nuclei_table(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    rows, summaries = r["rows"], r["summaries"]
    types = {c["type"] for c in r["cases"]}
    counts = {t: sum(c["type"] == t for c in r["cases"]) for t in NUCLEI_TYPES if t in types}
    run_folds = sorted({s["fold"] for s in summaries})
    strata = ", ".join(f"{t} {n}" for t, n in counts.items())
    lines = [
        f"Nuclei (DSB 2018): {len(r['cases'])} images, {args.nuclei_folds}-fold cross-validation "
        f"stratified by image type from the pixels ({strata}); "
        f"folds run: {run_folds}; mean over held-out images",
        f"{'method':<44} {'images':<22} {'n':>4} {'Dice':>6} {'AJI':>6} {'PQ':>6} {'F1@0.5':>7}",
    ]
    names = {
        "otsu_cc": "Otsu + connected components",
        "otsu_ws": "Otsu + distance-transform watershed",
    }
    groups = [("all", None)] + [(t, t) for t in counts]
    methods: list[tuple[str, str, str]] = [
        ("otsu_cc", args.nuclei_variants[0], names["otsu_cc"]),
        ("otsu_ws", args.nuclei_variants[0], names["otsu_ws"]),
    ] + [("model", v, f"U-Net + watershed [{v}]") for v in args.nuclei_variants]
    for key, variant, label in methods:
        for group, kind in groups:
            chosen = [
                x[key]
                for x in rows
                if x["variant"] == variant and key in x and (kind is None or x["type"] == kind)
            ]
            if not chosen:
                continue
            m = mean_metrics(chosen)
            lines.append(
                f"{label:<44} {group:<22} {len(chosen):4d} {m['dice']:6.3f} {m['aji']:6.3f} "
                f"{m['pq']:6.3f} {m['f1']:7.3f}"
            )
    names_seen = [n for x in rows for n in x.get("choices", {})]
    for name in dict.fromkeys(names_seen):
        for group, kind in groups:
            chosen = [
                x["choices"][name]
                for x in rows
                if name in x.get("choices", {}) and (kind is None or x["type"] == kind)
            ]
            if chosen:
                m = mean_metrics(chosen)
                label = f"  watershed by {name} [{args.nuclei_variants[0]}]"
                lines.append(
                    f"{label:<44} {group:<22} {len(chosen):4d} {m['dice']:6.3f} "
                    f"{m['aji']:6.3f} {m['pq']:6.3f} {m['f1']:7.3f}"
                )
    g = NUCLEI_TARGETS
    lines.append(
        f"{'target (held-out set)':<44} {'all':<22} {'':>4} {g['dice']:6.2f} {g['aji']:6.2f} "
        f"{g['pq']:6.2f} {g['f1']:7.2f}"
    )
    lines.append("")
    for s in summaries:
        touch = s["max_val_dice_touching"]
        lines.append(
            f"  [{s['variant']}] fold {s['fold']}: {s['n_train']} train + {s['n_val']} val, "
            f"{s['n_test']} held out; training {s['train_minutes']:.1f} min of "
            f"{_train_threads(s, args)}-core CPU time ({s['clock']} clock; wall "
            f"{s['train_wall_minutes']:.1f}"
            f" min), {s['epochs']} epochs x 50 steps ({s['precision']}"
            f"{', ' + s['compile'] if s.get('compile') else ''}), best epoch "
            f"{s['best_epoch']} (val Dice {s['val_dice']:.3f}, touching class best "
            f"{'n/a' if touch is None else f'{touch:.3f}'}); watershed chosen on the val "
            f"images: {s['postprocess']}; training profile {s['profile_types']}"
        )
    total = sum(s["train_minutes"] for s in summaries)
    fit = sum(s["fit_cpu_minutes"] for s in summaries)
    cores = "/".join(sorted({str(_train_threads(s, args)) for s in summaries})) or args.threads
    lines.append(
        f"  training in total {total:.1f} min of {cores}-core CPU time (the budget: "
        f"{args.nuclei_minutes:g} min per variant); preprocess + train + watershed choice "
        f"{fit:.1f} process CPU-minutes"
        + (
            f"; all nuclei work {r['total_s'] / 60:.1f} min wall"
            if r["total_s"] == r["total_s"]
            else ""
        )
    )
    for variant in args.nuclei_variants:
        flagged = {}
        for x in rows:
            if x["variant"] == variant:
                n, f = flagged.get(x["type"], (0, 0))
                flagged[x["type"]] = (n + 1, f + bool(x["flags"]))
        lines.append(
            f"  [{variant}] held-out images flagged as outside the training profile: "
            + ", ".join(f"{t} {f} of {n}" for t, (n, f) in sorted(flagged.items()))
        )
    return lines


# --------------------------------------------------------------------------------------------
# BraTS


SWEEP = (0.8, 1.0, 1.5, 2.0)


def flair_z(flair_path: str) -> tuple[np.ndarray, np.ndarray]:
    """The FLAIR z-score inside the brain (the non-zero voxels), and the brain mask."""
    flair = np.asarray(nib.load(flair_path).dataobj, dtype=np.float32)
    brain = flair != 0
    return (flair - flair[brain].mean()) / flair[brain].std(), brain


def brats_baseline(z: np.ndarray, brain: np.ndarray, threshold: float = 1.5) -> np.ndarray:
    """FLAIR z > threshold inside the brain, largest component (6-connected)."""
    return keep_largest(((z > threshold) & brain).astype(np.uint8), connectivity=1)


#: The networks the BraTS benchmark can train (``--brats-nets``).
BRATS_NETS = ("3d", "2d")
NET_NAMES = {
    "3d": "3D U-Net",
    "2d": "2D slice U-Net",
    "ensemble": "ensemble",
    "baseline": "baseline",
}


def brats_cases(root: Path, modalities: list[str]) -> list[dict[str, Any]]:
    """Every case folder with a whole-tumour mask: its image files (one per modality)."""
    return [
        {
            "case": d.name,
            "image": [str(d / f"{m.upper()}.nii.gz") for m in modalities],
            "label": str(d / "GT_W.nii.gz"),
        }
        for d in sorted(root.iterdir())
        if (d / "GT_W.nii.gz").is_file()
    ]


def brats_budget(args: argparse.Namespace) -> dict[str, float]:
    """Training CPU-minutes of each network over all folds: ``--brats-cpu-minutes`` split by
    ``--brats-share-2d`` (all of it to the one network when only one is trained)."""
    total = float(args.brats_cpu_minutes)
    if set(args.brats_nets) == {"2d"}:
        return {"2d": total}
    if set(args.brats_nets) == {"3d"}:
        return {"3d": total}
    return {"2d": total * args.brats_share_2d, "3d": total * (1.0 - args.brats_share_2d)}


def brats_task(args: argparse.Namespace, net: str) -> dict[str, Any]:
    """The task (its configuration keys) each network of the benchmark trains with."""
    if net == "2d":
        segmentation = {
            "samples_per_image": 1,
            "positive_fraction": args.brats_positive_2d,
            "scale_range": args.brats_scale_range,
            "slices": {
                "enabled": True,
                "axis": args.brats_axis,
                "context": args.brats_context,
                "foreground_fraction": args.brats_foreground_fraction,
            },
        }
        train = {"iterations_per_epoch": 50, "batch_size": args.brats_batch_2d}
    else:
        segmentation = {
            "samples_per_image": 1,
            "positive_fraction": 1 / 3,
            "scale_range": args.brats_scale_range,
        }
        train = {"iterations_per_epoch": 20, "batch_size": 2}
    return {
        "kind": "segmentation",
        "modalities": ["MR"],
        "segmentation": segmentation,
        "train": {
            **train,
            "epochs": 10_000,  # the time budget ends training
            "learning_rate": 2e-3,
            "warmup_epochs": 1,
            "seed": SEED,
        },
    }


def brats_plans(
    train: list[dict[str, Any]], args: argparse.Namespace, net: str, task: dict[str, Any]
) -> dict[str, Any]:
    """The fold's plans (from its training cases only) for one network."""
    two = net == "2d"
    return make_seg_plans(
        "brats",
        train,
        kind=task["kind"],
        modalities=task["modalities"],
        classes=["whole_tumour"],
        touching_class=False,
        target_spacing=[args.brats_spacing],
        patch_size=args.brats_patch_2d if two else args.brats_patch,
        normalisation=args.brats_normalisation,
        network="unet",
        features=args.brats_features_2d if two else None,
        batch_size=task["train"]["batch_size"],
        memory_budget_mb=args.memory_mb,
        slices=task["segmentation"].get("slices"),
    )


def scores(pred: np.ndarray, ref: np.ndarray, spacing: Any) -> dict[str, float]:
    """Dice and HD95 (mm) of a mask, as it is and with only its largest component kept."""
    largest = keep_largest(pred.astype(np.uint8)) > 0
    return {
        "dice": dice(pred, ref),
        "hd95": hd95(pred, ref, spacing),
        "largest_dice": dice(largest, ref),
        "largest_hd95": hd95(largest, ref, spacing),
        "volume_ml": float(largest.sum() * np.prod(spacing) / 1000.0),
    }


def run_brats(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Leave one case out over every case: per fold and network, plan and preprocess the
    training cases, train within the network's share of the budget, predict the held-out
    case back on its 1 mm ingest grid; the ensemble is the mean of the networks' tumour
    probabilities there."""
    t0 = time.perf_counter()
    cases = brats_cases(data / "brats2018", args.brats_modalities)
    budget = brats_budget(args)
    # train_segmenter's cpu clock counts CPU seconds / threads: per fold, the network's
    # CPU-minutes divided by the folds and the threads (wall minutes on a GPU).
    per_fold = {
        net: budget[net] / len(cases) / (args.threads if args.device == "cpu" else 1)
        for net in args.brats_nets
    }
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    # The preprocessed arrays depend only on the target spacing and the per-image ``mr``
    # z-score, not on the fold's fingerprint: each case is preprocessed once.
    arrays: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for k, held in enumerate(cases):
        if args.brats_held and held["case"] not in args.brats_held:
            continue
        train = [c for c in cases if c is not held]
        ref_img = nib.load(held["label"])
        ref = np.asarray(ref_img.dataobj) > 0
        spacing = ref_img.header.get_zooms()[:3]
        z, brain = flair_z(held["image"][0])
        base = brats_baseline(z, brain)
        row: dict[str, Any] = {
            "case": held["case"],
            "reference_ml": float(ref.sum() * np.prod(spacing) / 1000.0),
            "baseline": {
                "dice": dice(base, ref),
                "hd95": hd95(base, ref, spacing),
                "volume_ml": float(base.sum() * np.prod(spacing) / 1000.0),
            },
            # Where each case's annotated boundary sits in FLAIR contrast: the baseline's
            # Dice at other thresholds (no learning, so no fold involved).
            "sweep": [dice(brats_baseline(z, brain, t), ref) for t in SWEEP],
        }
        probabilities = {}
        for net in args.brats_nets:
            task = brats_task(args, net)
            plans = brats_plans(train, args, net, task)
            items = []
            for c in train:
                key = (c["case"], json.dumps([plans["target_spacing"], plans["normalisation"]]))
                if key not in arrays:
                    image, label, _ = preprocess_case(c["image"], c["label"], plans)
                    arrays[key] = {"image": image, "label": label}
                items.append(arrays[key])
            fold = work / "models" / net / f"fold{k}"
            cpu0, t_train = time.process_time(), time.perf_counter()
            metrics = train_or_reuse(items, [], plans, task, fold, args, per_fold[net])
            train_wall = time.perf_counter() - t_train
            train_cpu = time.process_time() - cpu0
            models, description = load_models([fold], args.device)
            cpu1, t_pred = time.process_time(), time.perf_counter()
            prob, _, _ = predict_probabilities(
                models,
                description["plans"],
                held["image"],
                args.device,
                flips=True,
                overlap=args.brats_overlap,
            )
            probabilities[net] = prob[1]
            row[net] = {
                **scores(prob.argmax(0) > 0, ref, spacing),
                # the budget's clock: CPU seconds / threads on a CPU, so * threads / 60
                "train_cpu_minutes": metrics["train_seconds"]
                * (metrics.get("threads", args.threads) if metrics["clock"] == "cpu" else 1)
                / 60,
                "process_cpu_minutes": train_cpu / 60,
                "train_wall_minutes": train_wall / 60,
                "epochs": metrics["epochs_run"],
                "steps": metrics["epochs_run"] * metrics["iterations_per_epoch"],
                "precision": metrics.get("precision"),
                "predict_cpu_s": time.process_time() - cpu1,
                "predict_wall_s": time.perf_counter() - t_pred,
                "patch": plans["patch_size"],
                "batch": plans["batch_size"],
                "channels": plans["network"].get("channels"),
            }
        if len(probabilities) > 1:
            mean = np.mean(list(probabilities.values()), axis=0)
            row["ensemble"] = scores(mean > 0.5, ref, spacing)
        rows.append(row)
        log.info("brats %s: %s", held["case"], json.dumps(row, default=str))
        # Each fold's figures as soon as they exist: a long run stopped later keeps them.
        with open(work / "rows.jsonl", "a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
    return {"rows": rows, "total_s": time.perf_counter() - t0, "budget": budget}


def collect_brats(args: argparse.Namespace) -> dict[str, Any]:
    """The rows that earlier runs wrote into ``<work>/brats/rows.jsonl`` for each of
    ``--brats-collect``'s folders (the last row of a case wins), in case order."""
    by_case: dict[str, dict[str, Any]] = {}
    for folder in args.brats_collect:
        with open(folder / "brats" / "rows.jsonl") as fh:
            for line in fh:
                row = json.loads(line)
                by_case[row["case"]] = row
    rows = [by_case[c] for c in sorted(by_case)]
    return {"rows": rows, "total_s": float("nan"), "budget": brats_budget(args)}


# --------------------------------------------------------------------------------------------
# Report


def brats_table(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    rows = r["rows"]
    methods = [m for m in (*args.brats_nets, "ensemble") if m in rows[0]] + ["baseline"]
    modalities = " + ".join(m.upper() for m in args.brats_modalities)
    lines = [
        f"BraTS 2018 whole tumour: leave one case out over {len(rows)} cases ({modalities} at "
        f"{args.brats_spacing} mm, evaluated on the 1 mm ingest grid; every network's mask "
        "is its largest connected component, as `segmentation.largest_component: true`)",
        "  3D U-Net: 3D patches; 2D slice U-Net: `segmentation.slices` ("
        f"{args.brats_axis}, {args.brats_context} context slice(s) per side); ensemble: mean "
        "of the two networks' tumour probabilities; baseline: FLAIR z > 1.5 inside the brain, "
        "largest component",
        f"{'held-out case':<14}"
        + "".join(f" {NET_NAMES[m][:16]:>16} {'HD95':>6}" for m in methods),
    ]

    def cell(x: dict[str, Any], m: str) -> tuple[float, float]:
        if m == "baseline":
            return x[m]["dice"], x[m]["hd95"]
        return x[m]["largest_dice"], x[m]["largest_hd95"]

    for x in rows:
        lines.append(
            f"{x['case']:<14}"
            + "".join(f" {cell(x, m)[0]:16.3f} {cell(x, m)[1]:6.1f}" for m in methods)
        )
    lines.append(
        f"{'mean':<14}"
        + "".join(
            f" {np.mean([cell(x, m)[0] for x in rows]):16.3f} "
            f"{np.mean([cell(x, m)[1] for x in rows]):6.1f}"
            for m in methods
        )
    )
    lines.append(f"{'target':<14} {BRATS_TARGET:16.2f}  (and no case below its own baseline)")
    for m in methods[:-1]:
        below = [x["case"] for x in rows if cell(x, m)[0] < x["baseline"]["dice"]]
        lines.append(
            f"  {NET_NAMES[m]}: without the largest component Dice "
            + " ".join(f"{x[m]['dice']:.3f}" for x in rows)
            + f" (mean {np.mean([x[m]['dice'] for x in rows]):.3f}); cases below their "
            f"baseline: {', '.join(below) or 'none'}; to the target "
            f"{np.mean([cell(x, m)[0] for x in rows]) - BRATS_TARGET:+.3f}"
        )
    lines.append(
        "  tumour volume mL, reference / "
        + " / ".join(NET_NAMES[m] for m in methods)
        + ": "
        + "; ".join(
            f"{x['case']} {x['reference_ml']:.0f} / "
            + " / ".join(f"{x[m]['volume_ml']:.0f}" for m in methods)
            for x in rows
        )
    )
    lines.append(
        "  baseline Dice by FLAIR z threshold ("
        + ", ".join(f"{t:g}" for t in SWEEP)
        + "): "
        + "; ".join(f"{x['case']} " + " ".join(f"{d:.2f}" for d in x["sweep"]) for x in rows)
    )
    budget = r["budget"]
    clock = (
        "CPU-minutes (user + system CPU seconds of this process / 60, all threads together)"
        if args.device == "cpu"
        else "wall-clock minutes"
    )
    lines.append(
        f"  training budget {args.brats_cpu_minutes:g} {clock} in total over all networks and "
        "folds: "
        + ", ".join(f"{NET_NAMES[n]} {budget[n]:.3g}" for n in args.brats_nets)
        + f"; {args.threads} torch thread(s), device {args.device}"
    )
    for net in args.brats_nets:
        used = [x[net] for x in rows]
        lines.append(
            f"  {NET_NAMES[net]}: training used {sum(u['train_cpu_minutes'] for u in used):.1f} "
            f"{'CPU-' if args.device == 'cpu' else 'wall '}minutes "
            f"(process CPU while training {sum(u['process_cpu_minutes'] for u in used):.1f}; "
            f"wall {sum(u['train_wall_minutes'] for u in used):.1f} min), "
            + "steps per fold "
            + " ".join(str(u["steps"]) for u in used)
            + f" ({used[0]['precision']}), patch {used[0]['patch']} batch {used[0]['batch']}, "
            f"channels {used[0]['channels']}; prediction (flip TTA) "
            f"{np.mean([u['predict_cpu_s'] for u in used]):.0f} CPU-s per case"
        )
    if r["total_s"] == r["total_s"]:
        lines.append(f"  brats total wall {r['total_s'] / 60:.1f} min")
    else:
        lines.append(f"  (collected from {', '.join(str(f) for f in args.brats_collect)})")
    return lines


#: The data folder of each part (``--only``).
PARTS = {"nuclei": "nuclei_dsb2018", "brats": "brats2018"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--only", choices=["nuclei", "brats"], default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-mb", type=float, default=4000.0)
    parser.add_argument(
        "--nuclei-minutes",
        type=float,
        default=60.0,
        help="training budget of one variant's cross-validation, all folds together",
    )
    parser.add_argument("--nuclei-folds", type=int, default=3)
    parser.add_argument(
        "--nuclei-interior",
        type=float,
        nargs="+",
        default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        help="segmentation.watershed.interior_threshold (the values tried)",
    )
    parser.add_argument(
        "--nuclei-foreground",
        type=float,
        nargs="+",
        default=[0.4, 0.5, 0.6, 0.7, 0.8],
        help="segmentation.watershed.foreground_threshold (the values tried)",
    )
    parser.add_argument(
        "--nuclei-score",
        choices=["aji", "pq", "f1"],
        default=None,
        help="segmentation.watershed.score: what the watershed choice maximises (default: the "
        "schema's)",
    )
    parser.add_argument(
        "--no-nuclei-choice-ablation",
        dest="nuclei_choice_ablation",
        action="store_false",
        help="leave out the watershed-choice ablation (each score, configured and wider "
        "thresholds, on the same models)",
    )
    parser.add_argument(
        "--nuclei-held-fluorescence",
        type=int,
        default=None,
        help="evaluate only this many of a fold's held-out fluorescence images (all others)",
    )
    parser.add_argument(
        "--nuclei-collect",
        action="store_true",
        help="no training: the table of what earlier runs with this --work wrote",
    )
    parser.add_argument(
        "--nuclei-features", type=int, default=16, help="segmentation.features (first level)"
    )
    parser.add_argument(
        "--nuclei-overlap", type=float, default=0.25, help="segmentation.overlap (sliding window)"
    )
    parser.add_argument(
        "--nuclei-run-folds", type=int, nargs="+", default=None, help="only these folds (0-based)"
    )
    parser.add_argument(
        "--nuclei-variants",
        nargs="+",
        choices=sorted(NUCLEI_VARIANTS),
        default=["full"],
        help="settings to cross-validate (the ablation: full no_rescale rgb)",
    )
    parser.add_argument("--nuclei-patch", type=int, nargs=2, default=[128, 128])
    parser.add_argument("--nuclei-batch", type=int, default=8)
    parser.add_argument(
        "--nuclei-touching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learn the touching boundary as a fourth class (segmentation.touching_class)",
    )
    parser.add_argument(
        "--brats-cpu-minutes",
        type=float,
        default=60.0,
        help="training budget of all networks and folds together, in CPU-minutes (user + "
        "system CPU time of this process; wall-clock minutes with a GPU)",
    )
    parser.add_argument(
        "--brats-share-2d",
        type=float,
        default=0.75,
        help="the 2D slice U-Net's share of the budget (the 3D U-Net has the rest)",
    )
    parser.add_argument("--brats-nets", nargs="+", choices=BRATS_NETS, default=list(BRATS_NETS))
    parser.add_argument("--brats-spacing", type=float, default=2.0)
    parser.add_argument("--brats-patch", type=int, nargs=3, default=[64, 64, 64])
    parser.add_argument("--brats-patch-2d", type=int, nargs=2, default=[96, 96])
    parser.add_argument("--brats-batch-2d", type=int, default=8, help="slices per batch")
    parser.add_argument("--brats-features-2d", type=int, default=32)
    parser.add_argument("--brats-axis", choices=["axial", "coronal", "sagittal"], default="axial")
    parser.add_argument(
        "--brats-context", type=int, default=1, help="segmentation.slices.context (2.5D)"
    )
    parser.add_argument(
        "--brats-foreground-fraction",
        type=float,
        default=0.5,
        help="segmentation.slices.foreground_fraction",
    )
    parser.add_argument(
        "--brats-positive-2d", type=float, default=0.5, help="positive_fraction inside a slice"
    )
    parser.add_argument("--brats-overlap", type=float, default=0.5)
    parser.add_argument(
        "--brats-modalities", nargs="+", choices=["flair", "t1"], default=["flair", "t1"]
    )
    parser.add_argument(
        "--brats-scale-range", type=float, nargs=2, default=[0.85, 1.15], metavar=("MIN", "MAX")
    )
    parser.add_argument("--brats-normalisation", choices=["mr", "mr_robust"], default="mr")
    parser.add_argument(
        "--brats-held", nargs="+", default=None, help="only these held-out cases (e.g. case_1)"
    )
    parser.add_argument(
        "--brats-collect",
        type=Path,
        nargs="+",
        default=None,
        help="no training: the table of the folds that runs with these --work folders wrote "
        "(folds run as separate processes with --brats-held)",
    )
    parser.add_argument(
        "--reuse-models", action="store_true", help="evaluate finished bundles in --work again"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write the table here (default: only segmentation.txt in --work; "
        "bench/results/segmentation.txt is the committed one)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.data.is_dir():
        print(f"segmentation benchmark skipped: no data folder {args.data}")
        return 0
    if args.only and not (args.data / PARTS[args.only]).is_dir():
        print(f"segmentation benchmark skipped: no {PARTS[args.only]} folder in {args.data}")
        return 0
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="medcnn-bench-seg-"))
    lines = [
        f"medcnn segmentation benchmark ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; "
        f"device {args.device}, {args.threads} torch threads, torch {torch.__version__})",
        "",
    ]
    if args.only in (None, "nuclei") and (args.data / "nuclei_dsb2018").is_dir():
        lines += nuclei_table(run_nuclei(args.data, work / "nuclei", args), args) + [""]
    if args.brats_collect:
        lines += brats_table(collect_brats(args), args) + [""]
    elif args.only in (None, "brats") and (args.data / "brats2018").is_dir():
        lines += brats_table(run_brats(args.data, work / "brats", args), args) + [""]
    text = "\n".join(lines)
    print(text)
    for out in [work / "segmentation.txt"] + ([args.out] if args.out else []):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        out.with_suffix(".json").write_text(json.dumps({"command": sys.argv}, indent=2) + "\n")
    also = f" and {args.out}" if args.out else ""
    print(f"table written to {work / 'segmentation.txt'}{also}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
