# Shared names and input functions. No logic beyond looking things up.
import csv
import math
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

if workflow.config_settings.config_args:
    # The medcnn steps read the config file; overrides given with --config would reach
    # Snakemake but not them, and results would silently disagree with what was asked.
    raise WorkflowError(
        "medcnn does not take --config key=value overrides; copy config/config.yaml, edit "
        "it and pass it with --configfile"
    )

# Jobs call `medcnn`; take the one installed next to the Python running Snakemake (a venv or
# conda env need not be activated, and pyenv needs no rehash).
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from medcnn.ingest.discovery import inventory_digest
from medcnn.config import attach_bundles, bundle_folds

attach_bundles(config)  # tasks predicted with bundles join config["tasks"]

# The one file the medcnn steps read: the --configfile given, or the demo's config/config.yaml.
# Several --configfile would be merged by Snakemake but not by the steps, so they are refused.
if len(workflow.config_settings.configfiles) > 1:
    raise WorkflowError(
        "medcnn takes one --configfile (got "
        f"{len(workflow.config_settings.configfiles)}); merge them into one file"
    )
CONFIGFILE = str(Path(workflow.configfiles[0]).resolve())
RESULTS = config["results"]
LOGS = config["logs"]
# Wall time, memory and CPU of every job (Snakemake `benchmark:` files), for bench/ and users.
BENCHMARKS = f"{RESULTS}/benchmarks"
TASKS = sorted(config["tasks"])
TRAINED = [t for t in TASKS if "bundle" not in config["tasks"][t]]
INPUT_FOLDERS = [i if isinstance(i, str) else i["path"] for i in config["inputs"]]


wildcard_constraints:
    subject=r"sub-[0-9a-f]+",
    batch=r"b[0-9]+",
    task=r"[A-Za-z][A-Za-z0-9_]*",
    fold=r"\d+",


def n_folds(task):
    """Folds per task (the split writes this many; one for a single train/val split)."""
    if is_bundle_task(task):
        return len(bundle_folds(config["tasks"][task]["bundle"]))
    return int(config["tasks"][task].get("split", {}).get("folds", 1))


def is_bundle_task(task):
    return "bundle" in config["tasks"][task]


def task_index(wildcards):
    """What a batch job of a task reads: the batch's own index (bundle task) or the task's."""
    if is_bundle_task(wildcards.task):
        return f"{RESULTS}/preprocess/{wildcards.task}/batches/{wildcards.batch}.tsv"
    return f"{RESULTS}/preprocess/{wildcards.task}/index.tsv"


def task_split(wildcards):
    return [] if is_bundle_task(wildcards.task) else f"{RESULTS}/splits/{wildcards.task}.json"


def fold_bundles(wildcards):
    if is_bundle_task(wildcards.task):
        return [f"{f}/bundle.json" for f in bundle_folds(config["tasks"][wildcards.task]["bundle"])]
    return [
        f"{RESULTS}/models/{wildcards.task}/fold{k}/bundle.json"
        for k in range(n_folds(wildcards.task))
    ]


def _largest_voxels():
    """Voxels of the largest image in the manifest (after ingest; 0 before)."""
    manifest = Path(RESULTS) / "ingest" / "manifest.tsv"
    if not manifest.exists():
        return 0
    with open(manifest) as fh:
        shapes = [row["shape"] for row in csv.DictReader(fh, delimiter="\t")]
    return max((math.prod(int(v) for v in s.split("x")) for s in shapes), default=0)


def _training_voxels(task):
    """Voxels of a task's whole preprocessed set (an upper bound: every image of the cohort)."""
    manifest = Path(RESULTS) / "ingest" / "manifest.tsv"
    if not manifest.exists():
        return 0
    with open(manifest) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if config["tasks"][task]["kind"] != "classification":
        # segmentation keeps every case in memory at about its own size (resampled)
        return sum(math.prod(int(v) for v in r["shape"].split("x")) for r in rows)
    n_images = len(rows)
    size = config["tasks"][task]["preprocess"]["size"]
    return n_images * size ** config["tasks"][task]["dims"]


def stage_resources(stage):
    """Snakemake resources of a stage from config, memory scaled to the data and retries."""
    settings = config["resources"][stage]

    def mem_mb(wildcards, attempt):
        voxels = _training_voxels(wildcards.task) if stage == "train" else _largest_voxels()
        # float32, and a few copies in flight (original, resampled, augmented, batch)
        scaled = voxels * 4 * 8 / 2**20 if stage in ("preprocess", "train", "predict", "saliency") else 0
        return int((settings["mem_mb"] + scaled) * attempt)

    def runtime(wildcards, attempt):
        return settings["runtime"] * attempt

    resources = {"mem_mb": mem_mb, "runtime": runtime}
    if settings.get("gpu"):
        resources["gpu"] = settings["gpu"]
    if settings.get("gpu", 0) > 1:
        # DDP training runs on one node (torchrun --standalone): SLURM must not spread the
        # GPUs over several (the SLURM plugin turns this into --nodes=1).
        resources["nodes"] = 1
    return resources


def subjects():
    """Subjects of the manifest; asks the ingest checkpoint, so it waits for ingest."""
    manifest = checkpoints.ingest_scans.get().output.manifest
    with open(manifest) as fh:
        return sorted({row["subject"] for row in csv.DictReader(fh, delimiter="\t")})


def batches():
    """Ingest's batches of subjects (one job per batch in the per-subject stages)."""
    table = checkpoints.ingest_scans.get().output.batches
    with open(table) as fh:
        return sorted({row["batch"] for row in csv.DictReader(fh, delimiter="\t")})


def batch_manifests(wildcards):
    """The batch's subject list and each member's own manifest: a batch re-runs when one of
    its subjects changes, and only then."""
    checkpoints.ingest_scans.get()
    members = Path(RESULTS) / "ingest" / "batches" / f"{wildcards.batch}.tsv"
    names = members.read_text().splitlines()[1:] if members.exists() else []
    return [str(members)] + [f"{RESULTS}/ingest/{s}/manifest.tsv" for s in names if s]


def batch_outputs(stage):
    """Input function: the batch markers of a stage (``predict``, ``saliency``, ``reports``)
    for every batch, of every task (or of the wildcards' task)."""

    def inputs(wildcards):
        tasks = [wildcards.task] if hasattr(wildcards, "task") else TASKS
        if stage == "reports":
            return [f"{RESULTS}/reports/batches/{b}.tsv" for b in batches()]
        return [f"{RESULTS}/{stage}/{t}/batches/{b}.tsv" for t in tasks for b in batches()]

    return inputs


def all_reports(wildcards):
    return batch_outputs("reports")(wildcards) + [f"{RESULTS}/reports/cohort.html"]
