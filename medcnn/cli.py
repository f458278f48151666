"""``medcnn <step>``: one command per workflow stage, a thin layer over the package.

Each step reads the validated configuration and the files of earlier stages, so it runs the
same inside Snakemake and by hand. Heavy libraries are imported inside the step that needs
them: ``medcnn report`` should not pay for importing torch.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from medcnn import __version__
from medcnn.config import ConfigError, load_config

log = logging.getLogger("medcnn")


def _demo_data(args: argparse.Namespace) -> None:
    from medcnn.demo import write_demo_cohort

    images = write_demo_cohort(
        Path(args.out), n_patients=args.patients, seed=args.seed, image_size=args.size
    )
    log.info(
        "demo cohort: %d images of %d patients in %s",
        len(images),
        len({i.patient_id for i in images}),
        args.out,
    )


def _ingest(args: argparse.Namespace) -> None:
    from medcnn.ingest.pipeline import run_ingest

    run_ingest(load_config(args.config))


def _preprocess(args: argparse.Namespace) -> None:
    from medcnn.transforms.preprocess import run_preprocess, run_preprocess_subject

    config = load_config(args.config)
    if args.subject:
        run_preprocess_subject(config, args.task, args.subject)
    else:
        run_preprocess(config, args.task)


def _split(args: argparse.Namespace) -> None:
    from medcnn.data.split import run_split

    run_split(load_config(args.config), args.task)


@contextlib.contextmanager
def _stage_device(config: dict, stage: str) -> Iterator[None]:
    """Claim the stage's GPUs (if any) and resolve ``device: auto`` for this job.

    ``auto`` means CUDA only when the stage asks for GPUs (``resources.<stage>.gpu``): a job
    that did not claim a device must not start on whichever GPU happens to be device 0.
    """
    from medcnn.devices import claim_gpus

    gpus = config["resources"][stage].get("gpu", 0)
    with claim_gpus(gpus, config["resources"]["jobs_per_gpu"]):
        if config["device"] == "auto":
            config["device"] = "cuda" if gpus else "cpu"
        yield


def _train(args: argparse.Namespace) -> None:
    from medcnn.train.classifier import run_train

    config = load_config(args.config)
    with _stage_device(config, "train"):
        run_train(config, args.task, args.fold, threads=args.threads)


def _predict(args: argparse.Namespace) -> None:
    from medcnn.predict.classifier import run_predict

    config = load_config(args.config)
    with _stage_device(config, "predict"):
        run_predict(config, args.task, args.subject, threads=args.threads)


def _evaluate(args: argparse.Namespace) -> None:
    from medcnn.metrics.evaluation import run_evaluate

    run_evaluate(load_config(args.config), args.task)


def _saliency(args: argparse.Namespace) -> None:
    from medcnn.saliency.pipeline import run_saliency

    config = load_config(args.config)
    with _stage_device(config, "saliency"):
        run_saliency(config, args.task, args.subject, threads=args.threads)


def _report(args: argparse.Namespace) -> None:
    from medcnn.report.render import render_cohort, render_subject

    config = load_config(args.config)
    if args.cohort:
        print(render_cohort(config))
    for subject in args.subject or []:
        print(render_subject(config, subject))


def _validate(args: argparse.Namespace) -> None:
    load_config(args.config)
    print(f"{args.config}: valid")


def _config_reference(args: argparse.Namespace) -> None:
    from medcnn.config import reference_markdown

    print(reference_markdown(), end="")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``medcnn`` command."""
    parser = argparse.ArgumentParser(prog="medcnn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medcnn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="step", required=True)

    def step(name: str, func, help_text: str, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if config:
            p.add_argument("--config", default="config/config.yaml", help="workflow config YAML")
        p.set_defaults(func=func)
        return p

    p = step("demo-data", _demo_data, "write the synthetic demo cohort (DICOM + labels.csv)", False)
    p.add_argument("out", help="output folder")
    p.add_argument("--patients", type=int, default=48, help="number of patients")
    p.add_argument("--size", type=int, default=256, help="image rows in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed")

    step("validate", _validate, "validate a config file against the schema")
    step("config-reference", _config_reference, "print the config reference (Markdown)", False)
    step("ingest", _ingest, "input folders -> NIfTI, sidecars, manifest.tsv, quarantine.tsv")
    p = step("preprocess", _preprocess, "preprocess a task's images and write plans.json")
    p.add_argument("--task", required=True)
    p.add_argument("--subject", help="one subject of a bundle task, with the bundle's plans")
    for name, func, text in (
        ("split", _split, "patient-level split of a task"),
        ("evaluate", _evaluate, "held-out metrics of a task's fold ensemble (evaluation.json)"),
    ):
        step(name, func, text).add_argument("--task", required=True)
    p = step("train", _train, "train one fold of a task")
    p.add_argument("--task", required=True)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    for name, func, text in (
        ("predict", _predict, "predict one subject"),
        ("saliency", _saliency, "saliency maps for one subject"),
    ):
        p = step(name, func, text)
        p.add_argument("--task", required=True)
        p.add_argument("--subject", required=True)
        p.add_argument("--threads", type=int, default=1)
    p = step("report", _report, "per-subject HTML reports and/or the cohort report")
    p.add_argument("--subject", nargs="*", help="subjects to report")
    p.add_argument("--cohort", action="store_true", help="write the cohort report")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medcnn`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if os.environ.get("SLURM_JOB_ID"):
        # Makes each job's log say where it ran (the SLURM test checks this line).
        log.info("SLURM job %s on %s", os.environ["SLURM_JOB_ID"], os.uname().nodename)
    try:
        args.func(args)
    except ConfigError as exc:
        print(f"medcnn: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
