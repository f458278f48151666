"""Chest X-ray classification on real films: medcnn against the MONAI-tutorial recipe.

    PYTHONPATH=. python bench/cxr.py [--data ../shared/data/cxr_nih] [--work /tmp/medcnn_cxr]
        [--folds 5] [--size 128] [--epochs 20] [--tutorial-epochs 20] [--threads 2]
        [--recipes medcnn,tutorial] [--only-folds 0,1] [--bootstrap 1000] [--seed 0]
        [--inner-folds 4]
    PYTHONPATH=. python bench/cxr.py --summarise WORK [WORK ...]   # runs (seeds) side by side

On ``cxr_nih`` (238 frontal NIH ChestX-ray14 films, pneumonia vs no finding, 139 patients)
both recipes are trained on the same patient-level, label-stratified 5-fold
cross-validation: in each outer fold the held-out patients are predicted by models that
never saw them. medcnn trains ``--inner-folds`` (default 4) models on a patient-level
cross-validation of the remaining patients (``split.folds: 4``, as the README's NIH config
sets it), each validated on its own quarter, and their ensemble predicts the held-out films;
the tutorial trains one model with a stratified fifth of those patients as its validation
set. Model selection, calibration and thresholds happen on validation patients, never on
the held-out films. The out-of-fold predictions of all 238 films are pooled.

* **medcnn** goes through the product: the NIH layout (the PNG folder and its one
  ``labels.csv``) is the config's ``inputs[].table`` with its column names, validated with
  :func:`medcnn.ingest.inputs.check_inputs` and ingested by the ingest stage; the
  preprocess stage, the train stage (:func:`medcnn.stages.train.classification.run_train`:
  the task's schema defaults, warm-up + cosine, EMA weights, Platt calibration, the bundle)
  and :func:`medcnn.inference.classification.ensemble_probabilities` (the bundle's
  calibration, test-time views) as a workflow run does them.
* **tutorial** is MONAI's MedNIST classification tutorial: DenseNet121 from scratch,
  ``LoadImage``/``EnsureChannelFirst``/``ScaleIntensity`` plus ``RandRotate(pi/12)``,
  ``RandFlip``, ``RandZoom(0.9-1.1)``, Adam, cross-entropy over two outputs, fp32, the epoch
  with the best validation AUROC kept. Two changes are unavoidable: a ``Resize`` to
  ``--size`` (MedNIST images are 64 px already; these are 1024 px) and a batch of 16 with
  ``--tutorial-lr`` 1e-4 (the tutorial's batch of 300 is more than a fold's training set,
  and its 1e-5 goes with that batch).

Figures: AUROC of the pooled out-of-fold predictions, overall and within AP and PA films,
with 95 % intervals from a bootstrap over patients, and the paired bootstrap (the same
patient resamples for both recipes) of the difference; expected calibration error before
and after calibration; the thresholds' warnings; and the CPU time of each recipe
(``resource.getrusage``: this process and its children, so the load of other jobs on a
shared machine does not count). Ablations that come from the same run: test-time views
on or off, calibration off, and the validation AUROC's epoch-to-epoch swing of the raw
weights against the EMA's (from each fold's history.csv).

The budget is 60 minutes on 2 cores (120 CPU-minutes) for both recipes together; the
defaults (128 px, 20 epochs each, medcnn's ensemble of 4 per outer fold: about 42 + 19
CPU-minutes at ``--threads 1`` on the reference machine) are chosen to fit it. With a GPU,
set ``--size 224 --epochs 40`` (and ``device: cuda``), which costs minutes there.

Skips (exit 0) when the data folder is absent. Work files (ingested films, models) go to
``--work``; a fold whose outputs are there already is not trained again.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cxr_nih"
TASK = "cxr"


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_config(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The workflow config of the benchmark: the NIH layout as one input table."""
    from medcnn.config import validate_config

    return validate_config(
        {
            "results": str(work / "results"),
            "logs": str(work / "logs"),
            "inputs": [
                {
                    "path": str(data),
                    "table": str(data / "labels.csv"),
                    "columns": {"file": "image", "subject": "patient_id"},
                    "modality": "DX",
                }
            ],
            "labels": {"columns": ["label"]},
            "deid": {"secret": "medcnn-bench-cxr"},
            "ingest": {"limits": {"isolate": False}},
            "device": "cpu" if args.device == "cpu" else "auto",
            "tasks": {
                TASK: {
                    "kind": "classification",
                    "target": {"column": "label", "positive": "pneumonia"},
                    "preprocess": {"size": args.size},
                    "split": {"folds": args.inner_folds, "val_fraction": 0.2, "seed": args.seed},
                    "train": {
                        "epochs": args.epochs,
                        "seed": args.seed,
                        **({"keep": args.keep} if args.keep else {}),
                        **({"patience": _patience(args.patience)} if args.patience else {}),
                        **({"ema_epochs": None} if args.no_ema else {}),
                    },
                    "evaluation": {"bootstrap": 200},
                    # The product's default; the test-time views are an ablation row.
                    "predict": {"tta": False},
                }
            },
        }
    )


def _patience(text: str) -> int | None:
    """``--patience``: epochs without a better validation AUROC, or ``none`` (no early stop)."""
    return None if text.lower() == "none" else int(text)


def prepare(config: dict[str, Any]) -> list[dict[str, str]]:
    """Validate, ingest and preprocess once (skipped when done); the task's index rows."""
    from medcnn.data.index import read_index
    from medcnn.ingest.inputs import check_inputs
    from medcnn.stages import ingest, preprocess

    problems = check_inputs(config)
    if problems:
        raise SystemExit("benchmark config invalid:\n  " + "\n  ".join(problems))
    index_path = Path(config["results"]) / "preprocess" / TASK / "index.tsv"
    if not (Path(config["results"]) / "ingest" / "manifest.tsv").exists():
        ingest.run(config)
    if not index_path.exists():
        preprocess.run_task(config, TASK)
    return [r for r in read_index(index_path).to_dict("records") if r["target"] != ""]


def outer_folds(rows: list[dict[str, str]], folds: int, seed: int) -> list[list[str]]:
    """Patient-level folds stratified by whether the patient has a positive film."""
    from sklearn.model_selection import StratifiedKFold

    positive: dict[str, int] = {}
    for r in rows:
        positive[r["subject"]] = max(positive.get(r["subject"], 0), int(r["target"] == "1"))
    subjects = sorted(positive)
    strata = [positive[s] for s in subjects]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [sorted(subjects[i] for i in test) for _, test in splitter.split(subjects, strata)]


def inner_folds(
    subjects: list[str], positive: dict[str, int], k: int, seed: int
) -> list[dict[str, list]]:
    """``k`` patient-level train/validation folds of the outer fold's training patients,
    stratified by label, as ``split.folds: k`` makes them: each patient validates one model,
    and the ensemble of the ``k`` models predicts the held-out films."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    strata = [positive[s] for s in subjects]
    return [
        {"train": sorted(subjects[i] for i in tr), "val": sorted(subjects[i] for i in va)}
        for tr, va in splitter.split(subjects, strata)
    ]


def inner_split(subjects: list[str], positive: dict[str, int], seed: int) -> dict[str, list]:
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(
        subjects, test_size=0.2, random_state=seed, stratify=[positive[s] for s in subjects]
    )
    return {"train": sorted(train), "val": sorted(val)}


def fold_results(config: dict[str, Any], k: int, split: dict[str, Any]) -> dict[str, Any]:
    """A results folder for outer fold ``k`` sharing the ingested and preprocessed films,
    with the fold's split (test: the outer fold; one inner train/validation split)."""
    base = Path(config["results"])
    results = base.parent / "outer" / f"fold{k}" / "results"
    results.mkdir(parents=True, exist_ok=True)
    for part in ("ingest", "preprocess"):
        link = results / part
        if not link.exists():
            link.symlink_to(base / part, target_is_directory=True)
    (results / "splits").mkdir(exist_ok=True)
    (results / "splits" / f"{TASK}.json").write_text(json.dumps({"task": TASK, **split}))
    return {**config, "results": str(results)}


def run_medcnn_fold(
    config: dict[str, Any],
    test_rows: list[dict[str, str]],
    val_rows: list[list[dict[str, str]]],
    threads: int,
) -> dict[str, Any]:
    """Train the fold's model (one per inner fold) through the train stage and predict its
    held-out films from the bundles as the predict stage does (each calibrated on its own
    validation patients, the probabilities averaged; with and without test-time views;
    uncalibrated)."""
    from medcnn.data.labels import LabelScheme
    from medcnn.inference.classification import ensemble_probabilities
    from medcnn.models.bundle import load_bundle
    from medcnn.stages.train.classification import run_train

    results = Path(config["results"])
    folders = [results / "models" / TASK / f"fold{j}" for j in range(len(val_rows))]
    for j, folder in enumerate(folders):
        if not (folder / "bundle.json").exists():
            run_train(config, TASK, j, threads=threads)
    torch.set_num_threads(threads)
    bundles = [load_bundle(folder) for folder in folders]
    scheme = LabelScheme.from_target(config["tasks"][TASK]["target"])
    pre = results / "preprocess" / TASK
    images = np.stack([np.load(pre / r["array"]) for r in test_rows])
    device = torch.device("cpu")
    out = {}
    for name, tta, calibrate in (
        ("calibrated_tta", True, True),
        ("calibrated", False, True),
        ("uncalibrated_tta", True, False),
    ):
        probs = ensemble_probabilities(bundles, images, scheme, device, tta, calibrate)
        out[name] = probs.mean(axis=0)[:, 0]
    ablations = [
        calibration_ablation(b, pre, v, images, scheme, device)
        for b, v in zip(bundles, val_rows, strict=True)
    ]
    out.update({name: np.mean([a[name] for a in ablations], axis=0) for name in ablations[0]})
    if len(bundles) > 1:  # the ensemble's first member alone: what the ensemble adds
        out["single_model"] = ensemble_probabilities(
            bundles[:1], images, scheme, device, False, True
        )[0, :, 0]
    members = []
    for folder in folders:
        with open(folder / "history.csv") as fh:
            history = list(csv.DictReader(fh))
        members.append(
            {"metrics": json.loads((folder / "metrics.json").read_text()), "history": history}
        )
    return {"probabilities": out, "members": members}


def calibration_ablation(
    bundle: tuple[torch.nn.Module, dict[str, Any]],
    pre: Path,
    val_rows: list[dict[str, str]],
    images: np.ndarray,
    scheme: Any,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Held-out probabilities under each calibration method, each fitted afresh on the same
    inner-validation films' logits (no test-time views, as the main row): which method the
    ``evaluation.calibration`` default should be is decided here, from one set of models."""
    from medcnn.inference.classification import predict_logits
    from medcnn.metrics.calibration import apply_calibration, fit_calibration

    model, _ = bundle
    model.to(device)
    val = np.stack([np.load(pre / r["array"]) for r in val_rows])
    targets = np.array([[int(r["target"] == "1")] for r in val_rows])
    val_logits = predict_logits(model, val, device)
    test_logits = predict_logits(model, images, device)
    out = {}
    for method in ("platt", "temperature", "none"):
        fitted = fit_calibration(val_logits, targets, scheme.kind, method)
        name = "uncalibrated" if method == "none" else method
        out[name] = scheme.probabilities(apply_calibration(test_logits, fitted))[:, 0]
    return out


def ece_floor(probabilities: np.ndarray, bins: int, draws: int, seed: int) -> tuple[float, float]:
    """Mean and 95th percentile of the ECE that perfectly calibrated probabilities would
    show on this many films: labels drawn as Bernoulli(p) from the probabilities
    themselves. An observed ECE near this is sampling noise, not miscalibration."""
    from medcnn.metrics.classification import calibration

    rng = np.random.default_rng(seed)
    values = [
        calibration(rng.random(len(probabilities)) < probabilities, probabilities, bins)["ece"]
        for _ in range(draws)
    ]
    return float(np.mean(values)), float(np.percentile(values, 95))


class Films(torch.utils.data.Dataset):
    def __init__(self, items: list[dict[str, Any]], transform: Any) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        item = self.items[i]
        return plain(self.transform(item["image"])), item["label"]


def plain(image: Any) -> torch.Tensor:
    """A plain float tensor (MONAI's MetaTensor would route every operation of the network
    through its ``__torch_function__``: the same numbers, many times the CPU time)."""
    return torch.as_tensor(np.asarray(image), dtype=torch.float32)


def run_tutorial_fold(
    data: Path,
    rows_by_role: dict[str, list[dict[str, str]]],
    files: dict[str, str],
    args: argparse.Namespace,
    cache: Path,
) -> dict[str, Any]:
    """MONAI's MedNIST tutorial loop on the fold's films (PNG), best validation epoch kept;
    the held-out films' probabilities."""
    from monai.data import DataLoader
    from monai.networks.nets import DenseNet121
    from monai.transforms import (
        Compose,
        EnsureChannelFirst,
        LoadImage,
        RandFlip,
        RandRotate,
        RandZoom,
        Resize,
        ScaleIntensity,
    )

    from medcnn.metrics.classification import auroc

    if (cache / "tutorial.npy").exists():
        return {"probabilities": np.load(cache / "tutorial.npy")}
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    load = Compose(
        [
            LoadImage(image_only=True),
            EnsureChannelFirst(),
            ScaleIntensity(),
            Resize((args.size,) * 2),
        ]
    )
    augment = Compose(
        [
            RandRotate(range_x=np.pi / 12, prob=0.5, keep_size=True),
            RandFlip(spatial_axis=0, prob=0.5),
            RandZoom(min_zoom=0.9, max_zoom=1.1, prob=0.5),
        ]
    )

    def items(role: str) -> list[dict[str, Any]]:
        return [
            {"image": str(data / files[r["series"]]), "label": int(r["target"] == "1")}
            for r in rows_by_role[role]
        ]

    def arrays(role: str) -> torch.Tensor:
        return torch.stack([plain(load(it["image"])) for it in items(role)])

    # The deterministic part (reading, scaling, resizing) once, as CacheDataset would.
    cached = arrays("train")
    train_items = [
        {"image": cached[i], "label": it["label"]} for i, it in enumerate(items("train"))
    ]
    loader = DataLoader(Films(train_items, augment), batch_size=16, shuffle=True, num_workers=0)
    val, test = arrays("val"), arrays("test")
    val_labels = np.array([it["label"] for it in items("val")])
    model = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), args.tutorial_lr)
    best, best_state = -1.0, None
    for _epoch in range(args.tutorial_epochs):
        model.train()
        for images, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images.float()), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            probs = torch.softmax(model(val), dim=1)[:, 1].numpy()
        score = auroc(val_labels, probs)
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        test_probs = torch.cat(
            [torch.softmax(model(test[i : i + 32]), dim=1)[:, 1] for i in range(0, len(test), 32)]
        ).numpy()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "tutorial.npy", test_probs)
    return {"probabilities": test_probs}


def source_files(config: dict[str, Any], data: Path) -> dict[str, str]:
    """Each ingested series' PNG (relative to the data folder), for the tutorial's loader:
    the ingest pseudonymises the series from the file's relative path, so it is recomputed
    here the same way."""
    import csv as _csv

    from medcnn.io.deid import pseudonym, resolve_secret

    secret = resolve_secret(config["deid"]["secret"])
    with open(data / "labels.csv") as fh:
        names = [row["image"] for row in _csv.DictReader(fh)]
    return {f"DX-{pseudonym(n, secret, '', 8)}": n for n in names}


def auroc_table(
    targets: np.ndarray,
    scores: dict[str, np.ndarray],
    groups: np.ndarray,
    views: np.ndarray,
    n_resamples: int,
    seed: int,
) -> dict[str, Any]:
    """AUROC of each recipe overall and per view with patient-bootstrap 95 % intervals, and
    the paired-bootstrap interval of each recipe's difference from the tutorial."""
    from medcnn.metrics.classification import auroc, bootstrap_aurocs, percentile_interval

    names = list(scores)
    out: dict[str, Any] = {}
    for subset in ("all", "AP", "PA"):
        mask = np.ones(len(targets), bool) if subset == "all" else views == subset
        y = np.repeat(targets[mask, None], len(names), axis=1)
        s = np.stack([scores[n][mask] for n in names], axis=1)
        samples = bootstrap_aurocs(y, s, groups[mask], n_resamples, seed)
        entry = {"n": int(mask.sum()), "positives": int(targets[mask].sum())}
        for j, name in enumerate(names):
            entry[name] = {
                "auroc": auroc(targets[mask], scores[name][mask]),
                "ci": percentile_interval(samples[:, j]),
            }
            if name != "tutorial" and "tutorial" in names:
                diff = samples[:, j] - samples[:, names.index("tutorial")]
                entry[name]["minus_tutorial"] = entry[name]["auroc"] - auroc(
                    targets[mask], scores["tutorial"][mask]
                )
                entry[name]["minus_tutorial_ci"] = percentile_interval(diff)
        out[subset] = entry
    return out


def swing(history: list[dict[str, str]], column: str) -> float:
    """Mean absolute change of validation AUROC from epoch to epoch over the run's second
    half (how much the kept epoch is luck)."""
    values = [float(h[column]) for h in history if h.get(column) not in (None, "")]
    half = values[len(values) // 2 :]
    return float(np.mean(np.abs(np.diff(half)))) if len(half) > 1 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/medcnn_bench_cxr"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", default="", help="comma-separated outer folds to run")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tutorial-epochs", type=int, default=20)
    parser.add_argument("--tutorial-lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipes", default="medcnn,tutorial")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "auto"])
    parser.add_argument("--no-ema", action="store_true", help="ablation: train without EMA")
    parser.add_argument(
        "--keep",
        default=None,
        choices=["best", "last"],
        help="train.keep of medcnn's models (default: the schema's, last)",
    )
    parser.add_argument(
        "--patience",
        default=None,
        help="train.patience of medcnn's models, a number or 'none' (default: the schema's)",
    )
    parser.add_argument(
        "--inner-folds",
        type=int,
        default=4,
        help="medcnn's split.folds inside each outer fold: k > 1 (default 4) an ensemble of "
        "k cross-validated models; 1 one model on a train/validation split (the ablation)",
    )
    parser.add_argument(
        "--summarise",
        nargs="+",
        type=Path,
        metavar="WORK",
        help="print the runs in these work folders (e.g. one per --seed) side by side, with "
        "the mean of their differences from the tutorial, and exit",
    )
    args = parser.parse_args()
    if args.summarise:
        return summarise(args.summarise)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("medcnn.ingest", "medcnn.stages.preprocess"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data = args.data.resolve()
    if not (data / "labels.csv").is_file():
        print(f"skipped: no cxr_nih data at {data} (see ../shared/data/README.md)")
        return 0
    torch.set_num_threads(args.threads)
    recipes = args.recipes.split(",")
    config = bench_config(data, args.work, args)
    clock = {r: 0.0 for r in ["prepare", *recipes]}
    started = cpu_seconds()
    rows = prepare(config)
    clock["prepare"] = cpu_seconds() - started
    positive: dict[str, int] = {}
    for r in rows:
        positive[r["subject"]] = max(positive.get(r["subject"], 0), int(r["target"] == "1"))
    folds = outer_folds(rows, args.folds, args.seed)
    only = [int(k) for k in args.only_folds.split(",") if k] or list(range(args.folds))
    files = source_files(config, data)
    pooled: dict[str, list] = {"rows": []}
    fold_facts = []
    wall = time.perf_counter()
    for k in only:
        test = set(folds[k])
        rest = sorted(s for s in positive if s not in test)
        inner = inner_split(rest, positive, args.seed + k)
        members = [inner]
        if args.inner_folds > 1:
            members = inner_folds(rest, positive, args.inner_folds, args.seed + k)
        split = {"seed": args.seed, "test": sorted(test), "unlabeled": [], "folds": members}
        fold_config = fold_results(config, k, split)
        # the tutorial keeps its one train/validation split whatever medcnn's ensemble
        by_role = {
            "train": [r for r in rows if r["subject"] in set(inner["train"])],
            "val": [r for r in rows if r["subject"] in set(inner["val"])],
            "test": [r for r in rows if r["subject"] in test],
        }
        member_val = [[r for r in rows if r["subject"] in set(m["val"])] for m in members]
        results: dict[str, Any] = {}
        # CPU seconds of each recipe's fold, kept beside its outputs: a later run that finds
        # the fold done (or the report of folds run as parallel processes) counts them too.
        outer = Path(fold_config["results"]).parent
        for recipe in recipes:
            spent_path = outer / f"cpu_seconds_{recipe}.json"
            spent = {recipe: 0.0}
            if spent_path.exists():
                spent = json.loads(spent_path.read_text())
            elif (outer / "cpu_seconds.json").exists():  # both recipes in one file (earlier)
                spent = json.loads((outer / "cpu_seconds.json").read_text())
            before = cpu_seconds()
            if recipe == "medcnn":
                results[recipe] = run_medcnn_fold(
                    fold_config, by_role["test"], member_val, args.threads
                )
            else:
                cache = Path(fold_config["results"]).parent / "tutorial"
                results[recipe] = run_tutorial_fold(data, by_role, files, args, cache)
            spent = {recipe: spent.get(recipe, 0.0) + cpu_seconds() - before}
            spent_path.write_text(json.dumps(spent))
            clock[recipe] += spent[recipe]
        pooled["rows"] += [{**r, "fold": k} for r in by_role["test"]]
        for recipe, result in results.items():
            probs = result["probabilities"]
            for name, p in probs.items() if isinstance(probs, dict) else [(recipe, probs)]:
                key = recipe if name == recipe else f"{recipe}:{name}"
                pooled.setdefault(key, []).append(p)
        for j, member in enumerate(results["medcnn"]["members"] if "medcnn" in results else []):
            metrics, history = member["metrics"], member["history"]
            fold_facts.append(
                {
                    "fold": k if len(members) == 1 else f"{k}.{j}",
                    "best_epoch": metrics["best_epoch"],
                    "epochs_run": metrics["epochs_run"],
                    "threshold": metrics["threshold"],
                    "threshold_warnings": metrics["threshold_warnings"],
                    "calibration": metrics["calibration"],
                    "precision": metrics["precision"],
                    "swing_ema": swing(history, "val_auroc"),
                    "swing_raw": swing(history, "val_auroc_raw"),
                }
            )
        print(
            f"fold {k}: done ({time.perf_counter() - wall:.0f} s wall so far; CPU s "
            + ", ".join(f"{r} {clock[r]:.0f}" for r in recipes)
            + ")",
            flush=True,
        )
    report(args, pooled, fold_facts, clock, only)
    return 0


def report(
    args: argparse.Namespace,
    pooled: dict[str, list],
    fold_facts: list[dict[str, Any]],
    clock: dict[str, float],
    only: list[int],
) -> None:
    """Print the tables (and write them as JSON into the work folder)."""
    from medcnn.metrics.classification import calibration

    rows = pooled.pop("rows")
    targets = np.array([int(r["target"] == "1") for r in rows])
    groups = np.array([r["subject"] for r in rows])
    views = np.array([str(r.get("view", "")).upper() for r in rows])
    scores = {name: np.concatenate(parts) for name, parts in pooled.items()}
    main_scores = {}
    if "medcnn:calibrated" in scores:  # the product's defaults: calibrated, no test-time views
        main_scores["medcnn"] = scores["medcnn:calibrated"]
    if "tutorial" in scores:
        main_scores["tutorial"] = scores["tutorial"]
    table = auroc_table(targets, main_scores, groups, views, args.bootstrap, args.seed)
    command = "PYTHONPATH=. python bench/cxr.py " + " ".join(sys.argv[1:])
    print(f"\n{command}")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; "
        f"folds {only} of {args.folds}; {len(targets)} films, {len(set(groups))} patients"
    )
    print(
        f"{'films':<6} {'n':>4} {'pos':>4} "
        + " ".join(f"{n:>24}" for n in main_scores)
        + f" {'medcnn - tutorial (paired 95% CI)':>36}"
    )
    for subset, entry in table.items():
        cells = []
        for name in main_scores:
            e = entry[name]
            lo, hi = e["ci"]
            cells.append(f"{e['auroc']:.3f} ({_f(lo)}-{_f(hi)})".rjust(24))
        diff = ""
        if "medcnn" in entry and "minus_tutorial" in entry["medcnn"]:
            lo, hi = entry["medcnn"]["minus_tutorial_ci"]
            diff = f"{entry['medcnn']['minus_tutorial']:+.3f} ({_f(lo, '+')} to {_f(hi, '+')})"
        print(
            f"{subset:<6} {entry['n']:>4} {entry['positives']:>4} "
            + " ".join(cells)
            + f" {diff:>36}"
        )
    fold_of = np.array([r["fold"] for r in rows])
    if len(set(fold_of)) > 1:
        from medcnn.metrics.classification import auroc

        print("\nAUROC within each outer fold (not pooled: no cross-fold probability scale):")
        per_fold = {
            name: [auroc(targets[fold_of == k], s[fold_of == k]) for k in sorted(set(fold_of))]
            for name, s in main_scores.items()
        }
        for name, values in per_fold.items():
            print(
                f"  {name:<10} "
                + " ".join(f"{v:.3f}" for v in values)
                + f"   mean {np.mean(values):.3f}"
            )
    ece = {name: calibration(targets, s, 10)["ece"] for name, s in scores.items()}
    print(
        "\nexpected calibration error (10 bins) of the pooled out-of-fold probabilities, and"
        "\nthe ECE perfectly calibrated probabilities would show on these films (mean, 95th pct):"
    )
    floor = {name: ece_floor(s, 10, 1000, args.seed) for name, s in scores.items()}
    for name, value in ece.items():
        print(f"  {name:<28} {value:.3f}   floor {floor[name][0]:.3f} ({floor[name][1]:.3f})")
    if "medcnn:calibrated" in scores:
        from medcnn.metrics.classification import auroc

        print("\nablation from the same run (pooled out-of-fold AUROC, all films / AP films):")
        for name in (
            "medcnn:calibrated_tta",
            "medcnn:calibrated",
            "medcnn:uncalibrated_tta",
            "medcnn:uncalibrated",
            "medcnn:platt",
            "medcnn:temperature",
            "medcnn:single_model",
        ):
            if name not in scores:
                continue
            ap = views == "AP"
            print(
                f"  {name:<28} {auroc(targets, scores[name]):.3f} / "
                f"{auroc(targets[ap], scores[name][ap]):.3f}"
            )
    if fold_facts:
        print(
            "\nper fold (medcnn): best epoch / epochs run, threshold, validation ECE "
            "before -> after calibration, val AUROC swing raw vs EMA weights:"
        )
        for f in fold_facts:
            cal = f["calibration"]
            print(
                f"  fold {f['fold']}: {f['best_epoch']}/{f['epochs_run']}, "
                f"threshold {f['threshold']:.3f}{' (WARNING)' if f['threshold_warnings'] else ''}, "
                f"ECE {_f(cal.get('ece_before'))} -> {_f(cal.get('ece_after'))}, "
                f"swing {f['swing_raw']:.3f} vs {f['swing_ema']:.3f}, {f['precision']}"
            )
    print(
        "\nCPU time (user+system, all threads): "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in clock.items())
        + f"; total {sum(clock.values()) / 60:.1f} of the 120 CPU-minute budget "
        "(60 min on 2 cores)"
    )
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "cxr_results.json").write_text(
        json.dumps(
            {
                "command": command,
                "table": table,
                "ece": ece,
                "ece_floor": floor,
                "folds": fold_facts,
                "cpu_seconds": clock,
            },
            indent=2,
            default=float,
        )
    )


def summarise(works: list[Path]) -> int:
    """The main rows of finished runs (their ``cxr_results.json``) side by side: each run's
    AUROC of medcnn and the tutorial overall and within AP films, the paired-bootstrap
    interval of the difference, medcnn's ECE; then the mean over the runs."""
    runs = []
    for work in works:
        path = work / "cxr_results.json"
        if not path.is_file():
            print(f"skipped: {path} is missing (run the benchmark with --work {work} first)")
            continue
        runs.append((work, json.loads(path.read_text())))
    if not runs:
        return 1
    print(
        f"{'run':<28} {'medcnn':>7} {'tutor.':>7} {'diff (95% CI)':>24} | "
        f"{'AP med.':>7} {'AP tut.':>7} {'AP diff (95% CI)':>24} | {'ECE':>5}"
    )
    diffs: dict[str, list[float]] = {"all": [], "AP": []}
    eces = []
    for work, run in runs:
        cells = []
        for subset in ("all", "AP"):
            entry = run["table"][subset]
            med, tut = entry["medcnn"], entry["tutorial"]
            lo, hi = med["minus_tutorial_ci"]
            diffs[subset].append(med["minus_tutorial"])
            cells.append(
                f"{med['auroc']:>7.3f} {tut['auroc']:>7.3f} "
                + f"{med['minus_tutorial']:+.3f} ({_f(lo, '+')} to {_f(hi, '+')})".rjust(24)
            )
        ece = run["ece"].get("medcnn:calibrated", float("nan"))
        eces.append(ece)
        print(f"{work.name:<28} {cells[0]} | {cells[1]} | {ece:5.3f}")
        print(f"  {run['command']}")
    print(
        f"mean of {len(runs)} runs: medcnn - tutorial {np.mean(diffs['all']):+.3f} overall, "
        f"{np.mean(diffs['AP']):+.3f} within AP films; ECE {np.mean(eces):.3f}"
    )
    return 0


def _f(value: float | None, sign: str = "") -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, f"{sign}.3f")


if __name__ == "__main__":
    raise SystemExit(main())
