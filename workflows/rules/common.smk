# Shared names and input functions. No logic beyond looking things up.
import csv
from pathlib import Path

from snakemake.exceptions import WorkflowError

if workflow.config_settings.config_args:
    # The medcnn steps read the config file; overrides given with --config would reach
    # Snakemake but not them, and results would silently disagree with what was asked.
    raise WorkflowError(
        "medcnn does not take --config key=value overrides; copy config/config.yaml, edit "
        "it and pass it with --configfile"
    )

CONFIGFILE = str(Path(workflow.configfiles[-1]).resolve())
RESULTS = config["results"]
LOGS = config["logs"]
TASKS = sorted(config["tasks"])


wildcard_constraints:
    subject=r"sub-[0-9a-f]+",
    task=r"[A-Za-z][A-Za-z0-9_]*",
    fold=r"\d+",


def n_folds(task):
    """Folds per task (the split writes this many; one for a single train/val split)."""
    return int(config["tasks"][task].get("split", {}).get("folds", 1))


def fold_bundles(wildcards):
    return [
        f"{RESULTS}/models/{wildcards.task}/fold{k}/bundle.json"
        for k in range(n_folds(wildcards.task))
    ]


def subjects():
    """Subjects of the manifest; asks the ingest checkpoint, so it waits for ingest."""
    manifest = checkpoints.ingest_scans.get().output.manifest
    with open(manifest) as fh:
        return sorted({row["subject"] for row in csv.DictReader(fh, delimiter="\t")})


def all_reports(wildcards):
    return [f"{RESULTS}/reports/{s}.html" for s in subjects()] + [
        f"{RESULTS}/reports/cohort.html"
    ]
