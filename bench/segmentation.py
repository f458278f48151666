"""Segmentation on real data, against no-learning baselines computed in the same run.

    PYTHONPATH=. python bench/segmentation.py [--data ../shared/data] [--only nuclei|brats]
        [--nuclei-minutes 30] [--brats-minutes 30] [--threads 2] [--device cpu]

**CPU budget.** Each part trains for at most its minutes (default 30 each) of a 2-core CPU:
``--threads 2`` torch threads, and the budget counted in this process's CPU seconds divided by
the threads (``train_segmenter(clock="cpu")``), i.e. the minutes the run would take on two cores
of its own; on a machine shared with other jobs the wall clock runs longer, and is printed
beside it. Validation, prediction and the baselines are outside the training budget (their
times are printed too).

**Nuclei** (``nuclei_dsb2018``: ``<case>/images/<case>.png``, ``<case>/masks/*.png`` one binary
mask per nucleus). Each image and its masks go through the ingest layout (2D NIfTI, RGB as a
vector image, greyscale-as-RGB reduced to grey; the masks merged into one instance image, ids
in sorted path order). Fixed-seed image-level split: 80 % train (a tenth of it for model
selection), 20 % held out. The 2D U-Net learns background/interior/boundary and, as a fourth
class, the touching boundary (``segmentation.touching_class``; ``--no-nuclei-touching``: three
classes); the watershed of :func:`medcnn.postprocess.instances.instances_from_probabilities`
makes the instances.
Metrics per held-out image (Dice of the foreground, AJI, PQ, F1 at IoU 0.5), then the mean.
Baselines: Otsu threshold of the grey image (the minority side of the threshold is nuclei,
so dark nuclei on a bright field work too) + connected components, and the same mask split
by a distance-transform watershed (:func:`~medcnn.postprocess.instances.instances_from_mask`).

**BraTS** (``brats2018``: 3 cases, FLAIR + T1, whole-tumour mask ``GT_W``). Leave one case out,
3D U-Net on FLAIR + T1 at the plans' target spacing (2 mm here: the budget), the prediction
brought back to the 1 mm ingest grid (probabilities linearly, then argmax). Whole-tumour Dice
and HD95 (mm) per held-out case. Baseline: FLAIR z-score (inside the non-zero brain) > 1.5,
largest connected component; its Dice at thresholds 0.8-2 is printed too (the contrast at
which each case's annotated boundary lies). ``--brats-modalities flair``, ``--brats-scale-range``,
``--brats-normalisation mr_robust`` and ``--brats-held case_1`` try other settings.

Everything goes through the library the workflow uses: ``make_seg_plans``,
``preprocess_case``, ``train_segmenter``, ``load_models``/``predict_labels``. The table is
printed and written to ``bench/results/segmentation.txt``. Without the data folder the script
says so and exits 0. Nothing from the data folder is written into the repository.
"""

from __future__ import annotations

import argparse
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
    choose_postprocessing,
    labels_from_probabilities,
    load_models,
    predict_labels,
    predict_probabilities,
)
from medcnn.io.image2d import read_image_file  # noqa: E402
from medcnn.io.nifti import write_nifti  # noqa: E402
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
BRATS_TARGET = 0.88


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


def ingest_nuclei(source: Path, work: Path) -> list[dict[str, str]]:
    """Each DSB case as the ingest writes it: image NIfTI + merged instance NIfTI."""
    cases = []
    for folder in sorted(p for p in source.iterdir() if (p / "images").is_dir()):
        image_png = folder / "images" / f"{folder.name}.png"
        out = work / folder.name
        image_nii, inst_nii = out / "image.nii.gz", out / "instances.nii.gz"
        if not inst_nii.exists():
            data, affine, _, _ = read_image_file(image_png)
            instances = np.zeros(data.shape[:3], np.int32)
            for k, mask_png in enumerate(sorted((folder / "masks").glob("*.png")), start=1):
                mask, _, _, _ = read_image_file(mask_png)
                instances[mask.reshape(instances.shape) > 0] = k
            write_nifti(image_nii, data, affine, dtype=None)
            write_nifti(inst_nii, instances, affine, dtype=np.int32)
        cases.append({"case": folder.name, "image": str(image_nii), "label": str(inst_nii)})
    return cases


def grey_of(image_path: str) -> np.ndarray:
    """``(i, j)`` grey image of an ingest tile (mean of the colour channels)."""
    data = np.asarray(nib.load(image_path).dataobj, dtype=np.float32)
    if data.ndim == 5:
        return data[:, :, 0, 0, :].mean(axis=-1)
    return data[:, :, 0]


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


def run_nuclei(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    cases = ingest_nuclei(data / "nuclei_dsb2018", work / "ingest")
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(cases))
    n_test = int(round(0.2 * len(cases)))
    test = [cases[i] for i in order[:n_test]]
    train_all = [cases[i] for i in order[n_test:]]
    n_val = max(1, int(round(0.1 * len(train_all))))
    val, train = train_all[:n_val], train_all[n_val:]
    task = {
        "kind": "instance_segmentation",
        "modalities": ["OT"],
        "segmentation": {"samples_per_image": 2, "positive_fraction": 1 / 3, "overlap": 0.25},
        "train": {
            "epochs": 10_000,  # the time budget ends training
            "iterations_per_epoch": 50,
            "batch_size": args.nuclei_batch,
            "learning_rate": 2e-3,
            "warmup_epochs": 1,
            "val_every": 5,
            "class_weights": [1.0, 1.0, 2.0, 4.0] if args.nuclei_touching else [1.0, 1.0, 2.0],
            "seed": SEED,
        },
    }
    plans = make_seg_plans(
        "nuclei",
        train_all,
        kind=task["kind"],
        modalities=task["modalities"],
        classes=["nucleus"],
        touching_class=args.nuclei_touching,
        target_spacing=None,
        patch_size=args.nuclei_patch,
        normalisation="auto",
        network="unet",
        features=None,
        batch_size=args.nuclei_batch,
        memory_budget_mb=args.memory_mb,
    )
    if args.nuclei_channels:
        levels = len(plans["network"]["channels"])
        plans["network"]["channels"] = args.nuclei_channels[:levels]
    prep = time.perf_counter()

    def items(group: list[dict[str, str]]) -> list[dict[str, Any]]:
        out = []
        for c in group:
            image, label, _ = preprocess_case(c["image"], c["label"], plans)
            out.append({"image": image, "label": label})
        return out

    train_items, val_items = items(train), items(val)
    prep_s = time.perf_counter() - prep
    fold = work / "models" / "nuclei" / "fold0"
    t_train = time.perf_counter()
    metrics = train_or_reuse(train_items, val_items, plans, task, fold, args, args.nuclei_minutes)
    train_wall = time.perf_counter() - t_train
    models, description = load_models([fold], args.device)
    plans = description["plans"]
    t_pred = time.perf_counter()

    def probabilities(case: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        prob, _, _ = predict_probabilities(
            models, plans, case["image"], args.device, flips=True, overlap=0.5
        )
        ref = np.asarray(nib.load(case["label"]).dataobj)[:, :, 0].astype(np.int64)
        return prob, ref

    # Watershed settings chosen on the validation images (never on the held-out ones).
    val_pairs = [probabilities(c) for c in val]
    chosen, val_aji = choose_postprocessing([p for p, _ in val_pairs], [r for _, r in val_pairs])
    results: dict[str, list[dict[str, float]]] = {
        "model_default": [],
        "model": [],
        "otsu_cc": [],
        "otsu_ws": [],
    }
    for c in test:
        prob, ref = probabilities(c)
        results["model_default"].append(
            instance_metrics(labels_from_probabilities(prob, plans), ref)
        )
        results["model"].append(
            instance_metrics(labels_from_probabilities(prob, plans, chosen), ref)
        )
        grey = grey_of(c["image"])
        results["otsu_cc"].append(instance_metrics(otsu_components(grey), ref))
        results["otsu_ws"].append(instance_metrics(instances_from_mask(otsu_mask(grey)), ref))
    pred_s = time.perf_counter() - t_pred
    (work / "results.json").write_text(
        json.dumps({k: mean_metrics(v) for k, v in results.items()}, indent=2) + "\n"
    )
    return {
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "plans": {k: plans[k] for k in ("patch_size", "batch_size", "target_spacing")},
        "network": plans["network"],
        "means": {k: mean_metrics(v) for k, v in results.items()},
        "postprocess": chosen,
        "val_aji": val_aji,
        "train": metrics,
        "train_wall_s": train_wall,
        "preprocess_s": prep_s,
        "predict_s": pred_s,
        "total_s": time.perf_counter() - t0,
    }


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


def run_brats(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    root = data / "brats2018"
    cases = [
        {
            "case": d.name,
            "image": [str(d / f"{m.upper()}.nii.gz") for m in args.brats_modalities],
            "label": str(d / "GT_W.nii.gz"),
        }
        for d in sorted(root.iterdir())
        if (d / "GT_W.nii.gz").is_file()
    ]
    minutes = args.brats_minutes / len(cases)
    rows = []
    for k, held in enumerate(cases):
        if args.brats_held and held["case"] not in args.brats_held:
            continue
        train = [c for c in cases if c is not held]
        task = {
            "kind": "segmentation",
            "modalities": ["MR"],
            "segmentation": {
                "samples_per_image": 1,
                "positive_fraction": 1 / 3,
                "scale_range": args.brats_scale_range,
            },
            "train": {
                "epochs": 10_000,
                "iterations_per_epoch": 20,
                "batch_size": 2,
                "learning_rate": 2e-3,
                "warmup_epochs": 1,
                "seed": SEED,
            },
        }
        plans = make_seg_plans(
            "brats",
            train,
            kind=task["kind"],
            modalities=task["modalities"],
            classes=["whole_tumour"],
            touching_class=False,
            target_spacing=[args.brats_spacing],
            patch_size=args.brats_patch,
            normalisation=args.brats_normalisation,
            network="unet",
            features=None,
            batch_size=2,
            memory_budget_mb=args.memory_mb,
        )
        items = []
        for c in train:
            image, label, _ = preprocess_case(c["image"], c["label"], plans)
            items.append({"image": image, "label": label})
        fold = work / "models" / "brats" / f"fold{k}"
        t_train = time.perf_counter()
        metrics = train_or_reuse(items, [], plans, task, fold, args, minutes)
        train_wall = time.perf_counter() - t_train
        models, description = load_models([fold], args.device)
        t_pred = time.perf_counter()
        label_img, _, _ = predict_labels(
            models, description["plans"], held["image"], args.device, flips=True, overlap=0.5
        )
        pred = np.asarray(label_img.dataobj) > 0
        largest = keep_largest(pred.astype(np.uint8)) > 0
        ref_img = nib.load(held["label"])
        ref = np.asarray(ref_img.dataobj) > 0
        spacing = ref_img.header.get_zooms()[:3]
        z, brain = flair_z(held["image"][0])
        base = brats_baseline(z, brain)
        rows.append(
            {
                "case": held["case"],
                "dice": dice(pred, ref),
                "hd95": hd95(pred, ref, spacing),
                "largest_dice": dice(largest, ref),
                "largest_hd95": hd95(largest, ref, spacing),
                "baseline_dice": dice(base, ref),
                "baseline_hd95": hd95(base, ref, spacing),
                # Where each case's annotated boundary sits in FLAIR contrast: the baseline's
                # Dice at other thresholds (no learning, so no fold involved).
                "sweep": [dice(brats_baseline(z, brain, t), ref) for t in SWEEP],
                "train_minutes": metrics["train_seconds"] / 60,
                "train_wall_minutes": train_wall / 60,
                "epochs": metrics["epochs_run"],
                "predict_s": time.perf_counter() - t_pred,
                "patch": plans["patch_size"],
                "shape": description["plans"]["median_shape"],
            }
        )
        # Each fold's figures as soon as they exist: a long run stopped later keeps them.
        with open(work / "rows.jsonl", "a") as fh:
            fh.write(json.dumps(rows[-1], default=str) + "\n")
    return {"rows": rows, "total_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------
# Report


def nuclei_table(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    m, t = r["means"], r["train"]
    names = {
        "otsu_cc": "Otsu + connected components",
        "otsu_ws": "Otsu + distance-transform watershed",
        "model_default": "U-Net + watershed (default settings)",
        "model": "U-Net + watershed (tuned on val)",
    }
    lines = [
        f"Nuclei (DSB 2018): {r['n_train']} train + {r['n_val']} validation images, "
        f"{r['n_test']} held out (seed {SEED}); mean over held-out images",
        f"{'method':<40} {'Dice':>6} {'AJI':>6} {'PQ':>6} {'F1@0.5':>7}",
    ]
    for key in ("otsu_cc", "otsu_ws", "model_default", "model"):
        v = m[key]
        lines.append(
            f"{names[key]:<40} {v['dice']:6.3f} {v['aji']:6.3f} {v['pq']:6.3f} {v['f1']:7.3f}"
        )
    g = NUCLEI_TARGETS
    lines.append(f"{'target':<40} {g['dice']:6.2f} {g['aji']:6.2f} {g['pq']:6.2f} {g['f1']:7.2f}")
    lines.append(
        f"  training: {t['train_seconds'] / 60:.1f} min of {args.threads}-core CPU time "
        f"(budget {args.nuclei_minutes} min; wall {t['train_wall_seconds'] / 60:.1f} min "
        f"of training), {t['epochs_run']} epochs x {t['iterations_per_epoch']} steps, best "
        f"epoch {t['best_epoch']} (val Dice {t['val_dice']:.3f}); patch {r['plans']['patch_size']} "
        f"batch {r['plans']['batch_size']}, U-Net channels {r['network']['channels']}"
    )
    lines.append(
        f"  prediction: sliding window (overlap 0.5) with flip TTA; watershed settings chosen "
        f"on the validation images: {r['postprocess']} (val AJI {r['val_aji']:.3f})"
    )
    lines.append(
        f"  wall: preprocess {r['preprocess_s']:.0f} s, predict + baselines "
        f"{r['predict_s']:.0f} s, nuclei total {r['total_s'] / 60:.1f} min"
    )
    return lines


def brats_table(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    rows = r["rows"]
    lines = [
        "BraTS 2018 whole tumour: leave one case out (3D U-Net on "
        f"{' + '.join(m.upper() for m in args.brats_modalities)} at "
        f"{args.brats_spacing} mm, evaluated on the 1 mm ingest grid)",
        "  U-Net: the argmax; + largest: keeping its largest connected component (the same prior",
        "  as the baseline's; segmentation.largest_component in a task); baseline: FLAIR z > 1.5",
        f"{'held-out case':<14} {'U-Net':>6} {'HD95 mm':>8} {'+largest':>9} {'HD95 mm':>8} "
        f"{'baseline':>9} {'HD95 mm':>8} {'train min':>10} {'wall min':>9}",
    ]
    for x in rows:
        lines.append(
            f"{x['case']:<14} {x['dice']:6.3f} {x['hd95']:8.2f} {x['largest_dice']:9.3f} "
            f"{x['largest_hd95']:8.2f} {x['baseline_dice']:9.3f} {x['baseline_hd95']:8.2f} "
            f"{x['train_minutes']:10.1f} {x['train_wall_minutes']:9.1f}"
        )
    mean = {
        k: float(np.mean([x[k] for x in rows]))
        for k in rows[0]
        if k != "case" and isinstance(rows[0][k], float)
    }
    lines.append(
        f"{'mean':<14} {mean['dice']:6.3f} {mean['hd95']:8.2f} {mean['largest_dice']:9.3f} "
        f"{mean['largest_hd95']:8.2f} {mean['baseline_dice']:9.3f} {mean['baseline_hd95']:8.2f} "
        f"{sum(x['train_minutes'] for x in rows):10.1f} "
        f"{sum(x['train_wall_minutes'] for x in rows):9.1f}"
    )
    lines.append(f"{'target':<14} {BRATS_TARGET:6.2f}")
    lines.append(
        "  baseline Dice by FLAIR z threshold ("
        + ", ".join(f"{t:g}" for t in SWEEP)
        + "): "
        + "; ".join(f"{x['case']} " + " ".join(f"{d:.2f}" for d in x["sweep"]) for x in rows)
    )
    lines.append(
        f"  patch {rows[0]['patch']}, budget {args.brats_minutes} min of {args.threads}-core CPU "
        f"time in total; brats total wall {r['total_s'] / 60:.1f} min"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--only", choices=["nuclei", "brats"], default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-mb", type=float, default=4000.0)
    parser.add_argument("--nuclei-minutes", type=float, default=30.0)
    parser.add_argument("--nuclei-patch", type=int, nargs=2, default=[128, 128])
    parser.add_argument("--nuclei-batch", type=int, default=8)
    parser.add_argument(
        "--nuclei-touching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learn the touching boundary as a fourth class (segmentation.touching_class)",
    )
    parser.add_argument("--nuclei-channels", type=int, nargs="+", default=None)
    parser.add_argument("--brats-minutes", type=float, default=30.0)
    parser.add_argument("--brats-spacing", type=float, default=2.0)
    parser.add_argument("--brats-patch", type=int, nargs=3, default=[64, 64, 64])
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
        "--reuse-models", action="store_true", help="evaluate finished bundles in --work again"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "segmentation.txt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.data.is_dir():
        print(f"segmentation benchmark skipped: no data folder {args.data}")
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
    if args.only in (None, "brats") and (args.data / "brats2018").is_dir():
        lines += brats_table(run_brats(args.data, work / "brats", args), args) + [""]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    (args.out.with_suffix(".json")).write_text(json.dumps({"command": sys.argv}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
