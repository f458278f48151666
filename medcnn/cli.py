"""``medcnn <step>``: one command per workflow stage, a thin layer over the package.

Each step parses its arguments, reads the validated configuration and calls one stage of
:mod:`medcnn.stages`, so it runs the same inside Snakemake and by hand. Stages are imported
inside the step that needs them: ``medcnn report`` should not pay for importing torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from medcnn import __version__
from medcnn.config import ConfigError, load_config

log = logging.getLogger("medcnn")


def _demo_data(args: argparse.Namespace) -> None:
    from medcnn.demo import write_demo_data

    write_demo_data(
        args.out,
        cohort=args.cohort,
        patients=args.patients,
        size=args.size,
        slices=args.slices,
        spacing=args.spacing,
        tiles=args.tiles,
        seed=args.seed,
    )


def _ingest(args: argparse.Namespace) -> None:
    from medcnn.io.codecs import import_pydicom

    import_pydicom(defer_codecs=True)  # ~0.1 s less start; loaded when a file is compressed
    from medcnn.stages import ingest

    ingest.run(load_config(args.config), threads=args.threads)


def _preprocess(args: argparse.Namespace) -> None:
    import torch

    from medcnn.stages import preprocess

    torch.set_num_threads(max(1, args.threads))
    preprocess.run(load_config(args.config), args.task, args.subject, args.batch)


def _split(args: argparse.Namespace) -> None:
    from medcnn.stages.split import run_split

    run_split(load_config(args.config), args.task)


def _train(args: argparse.Namespace) -> int:
    from medcnn.stages import train

    return train.run(load_config(args.config), args.task, args.fold, args.threads, args.argv)


def _predict(args: argparse.Namespace) -> None:
    from medcnn.stages import predict

    config = load_config(args.config)
    predict.run(config, args.task, args.subject, args.batch, threads=args.threads)


def _evaluate(args: argparse.Namespace) -> None:
    from medcnn.stages import evaluate

    evaluate.run(load_config(args.config), args.task)


def _saliency(args: argparse.Namespace) -> None:
    from medcnn.stages import saliency

    config = load_config(args.config)
    saliency.run(config, args.task, args.subject, args.batch, threads=args.threads)


def _report(args: argparse.Namespace) -> None:
    from medcnn.stages import report

    report.run(load_config(args.config), args.subject, args.batch, cohort=args.cohort)


def _validate(args: argparse.Namespace) -> int:
    from medcnn.ingest.inputs import check_inputs

    problems = check_inputs(load_config(args.config))
    if problems:
        for problem in problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 1
    print(f"{args.config}: valid")
    return 0


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

    p = step("demo-data", _demo_data, "write a synthetic demo cohort", False)
    p.add_argument(
        "out",
        help="output folder (cxr: out/dicom + out/labels.csv; ct: out/ct; nuclei: out/nuclei)",
    )
    p.add_argument(
        "--cohort",
        choices=("cxr", "ct", "nuclei"),
        default="cxr",
        help="chest radiographs (DICOM + labels), CT lesion series (DICOM image + mask series)"
        " or nuclei tiles (PNG, one mask per nucleus)",
    )
    p.add_argument("--patients", type=int, default=None, help="patients (cxr 48, ct 10)")
    p.add_argument(
        "--size", type=int, default=None, help="rows in pixels (cxr 256, ct 64, nuclei 128)"
    )
    p.add_argument("--slices", type=int, default=32, help="ct: slices per series")
    p.add_argument(
        "--spacing", type=float, nargs=3, default=[1.5, 1.5, 3.0], help="ct: voxel size in mm"
    )
    p.add_argument("--tiles", type=int, default=14, help="nuclei: tiles")
    p.add_argument("--seed", type=int, default=0, help="random seed")

    step("validate", _validate, "validate a config file against the schema")
    step("config-reference", _config_reference, "print the config reference (Markdown)", False)
    p = step("ingest", _ingest, "input folders -> NIfTI, sidecars, manifest.tsv, quarantine.tsv")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="worker processes when ingest.workers is 0 (default: resources.ingest.threads)",
    )
    p = step("preprocess", _preprocess, "preprocess a task's images and write plans.json")
    p.add_argument("--task", required=True)
    subjects = p.add_mutually_exclusive_group()
    subjects.add_argument("--subject", help="one subject of a bundle task, with the bundle's plans")
    subjects.add_argument("--batch", help="the subjects of one ingest batch (bundle task)")
    p.add_argument("--threads", type=int, default=1)
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
        ("predict", _predict, "predict one subject or one batch of subjects"),
        ("saliency", _saliency, "saliency maps for one subject or one batch"),
    ):
        p = step(name, func, text)
        p.add_argument("--task", required=True)
        subjects = p.add_mutually_exclusive_group(required=True)
        subjects.add_argument("--subject", help="one subject")
        subjects.add_argument("--batch", help="the subjects of one ingest batch")
        p.add_argument("--threads", type=int, default=1)
    p = step("report", _report, "per-subject HTML reports and/or the cohort report")
    subjects = p.add_mutually_exclusive_group()
    subjects.add_argument("--subject", nargs="*", help="subjects to report")
    subjects.add_argument("--batch", help="the subjects of one ingest batch")
    p.add_argument("--cohort", action="store_true", help="write the cohort report")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medcnn`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # a DDP training job runs itself again with the same arguments
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        # One writer: the other ranks of a DDP job log only warnings and errors.
        level=logging.WARNING if rank else logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)s{f' [rank {rank}]' if rank else ''} %(name)s: "
        "%(message)s",
        stream=sys.stderr,
    )
    if os.environ.get("SLURM_JOB_ID"):
        # Makes each job's log say where it ran (the SLURM test checks this line).
        log.info("SLURM job %s on %s", os.environ["SLURM_JOB_ID"], os.uname().nodename)
    try:
        return args.func(args) or 0
    except ConfigError as exc:
        print(f"medcnn: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
