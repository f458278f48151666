# Shared names and input functions. No logic beyond looking things up.
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

if workflow.config_settings.config_args:
    # The medcnn steps read the config file; overrides given with --config would reach
    # Snakemake but not them, and results would silently disagree with what was asked.
    raise WorkflowError(
        "medcnn does not take --config key=value overrides; copy config/config.yaml, edit "
        "it and pass it with --configfile"
    )

# The medcnn command of the jobs (their params.medcnn). Without a software deployment method,
# the `medcnn` installed next to the Python running Snakemake (a venv or conda env need not
# be activated, and pyenv needs no rehash). With --sdm conda, the job's environment
# (workflows/envs/medcnn.yaml) holds medcnn's dependencies and medcnn runs from this
# checkout. With --sdm apptainer, the container's own medcnn (workflows/containers/medcnn.def).
_SDM = workflow.deployment_settings.deployment_method
if DeploymentMethod.APPTAINER in _SDM:
    MEDCNN = "medcnn"
elif DeploymentMethod.CONDA in _SDM:
    MEDCNN = f"PYTHONPATH={shlex.quote(str(Path(workflow.basedir)))} python -m medcnn"
elif (Path(sys.executable).parent / "medcnn").exists():
    MEDCNN = shlex.quote(str(Path(sys.executable).parent / "medcnn"))
else:
    MEDCNN = f"{shlex.quote(sys.executable)} -m medcnn"


from medcnn.ingest.discovery import inventory_digest
from medcnn.config import SEGMENTATION_KINDS, attach_bundles
from medcnn.stages import layout as results_layout
from medcnn.stages import resources as job_resources
from medcnn.stages import subjects as job_subjects

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
TRAINED = [t for t in TASKS if not results_layout.is_bundle(config, t)]
SEGMENTERS = [t for t in TASKS if config["tasks"][t]["kind"] in SEGMENTATION_KINDS]
CLASSIFIERS = [t for t in TASKS if t not in SEGMENTERS]
INPUT_FOLDERS = [i if isinstance(i, str) else i["path"] for i in config["inputs"]]


wildcard_constraints:
    subject=r"sub-[0-9a-f]+",
    batch=r"b[0-9]+",
    task=r"[A-Za-z][A-Za-z0-9_]*",
    fold=r"\d+",


def n_folds(task):
    """Folds per task (the split writes this many; one for a single train/val split)."""
    return results_layout.n_folds(config, task)


def task_index(wildcards):
    return results_layout.task_index_file(config, wildcards.task, wildcards.batch)


def task_split(wildcards):
    return results_layout.task_split_files(config, wildcards.task)


def fold_bundles(wildcards):
    return results_layout.fold_bundle_files(config, wildcards.task)


def stage_resources(stage):
    return job_resources.stage_resources(config, stage)


def batches():
    """Ingest's batches of subjects (one job per batch in the per-subject stages)."""
    return job_subjects.batch_names(checkpoints.ingest_scans.get().output.batches)


def batch_manifests(wildcards):
    checkpoints.ingest_scans.get()
    return job_subjects.batch_manifests(RESULTS, wildcards.batch)


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
