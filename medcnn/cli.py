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
from collections.abc import Callable, Iterator
from pathlib import Path

from medcnn import __version__
from medcnn.config import ConfigError, load_config

log = logging.getLogger("medcnn")


def _demo_data(args: argparse.Namespace) -> None:
    if args.cohort == "ct":
        from medcnn.demo_seg import write_ct_cohort

        cases = write_ct_cohort(
            Path(args.out) / "ct",
            n_patients=args.patients or 10,
            size=args.size or 64,
            n_slices=args.slices,
            spacing=tuple(args.spacing),
            seed=args.seed,
        )
        log.info(
            "CT lesion cohort: %d patients, %d lesions in %s/ct",
            len(cases),
            sum(c.n_lesions for c in cases),
            args.out,
        )
        return
    if args.cohort == "nuclei":
        from medcnn.demo_seg import write_nuclei_cohort

        tiles = write_nuclei_cohort(
            Path(args.out) / "nuclei", n_tiles=args.tiles, size=args.size or 128, seed=args.seed
        )
        log.info(
            "nuclei cohort: %d tiles, %d nuclei in %s/nuclei",
            len(tiles),
            sum(t.n_nuclei for t in tiles),
            args.out,
        )
        return
    from medcnn.demo import write_demo_cohort

    images = write_demo_cohort(
        Path(args.out), n_patients=args.patients or 48, seed=args.seed, image_size=args.size or 256
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


def _subjects(args: argparse.Namespace, config: dict) -> list[str]:
    """The subjects a per-subject step runs on: ``--batch`` (ingest's batch) or ``--subject``."""
    if getattr(args, "batch", None):
        from medcnn.ingest.batches import batch_subjects

        return batch_subjects(Path(config["results"]) / "ingest", args.batch)
    subject = getattr(args, "subject", None)
    return [subject] if isinstance(subject, str) else list(subject or [])


def _for_each_subject(
    subjects: list[str], work: Callable[[str], list[str]], marker: Path | None, what: str
) -> None:
    """Run ``work`` for each subject, then write ``marker`` (a TSV of subject and outputs).

    A subject that fails is logged with the error and the others go on; the step then fails
    (naming them) without writing the marker, so a re-run does the batch again.
    """
    rows, failed = [], []
    for subject in subjects:
        try:
            outputs = work(subject)
        except Exception:  # noqa: BLE001 - one bad subject must not stop its batch
            log.exception("%s failed for %s", what, subject)
            failed.append(subject)
            continue
        rows.extend(f"{subject}\t{o}" for o in outputs)
    if failed:
        raise RuntimeError(f"{what} failed for {len(failed)} subject(s): {', '.join(failed)}")
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_suffix(".part")
        tmp.write_text("\n".join(["subject\toutput", *rows]) + "\n")
        tmp.replace(marker)


def _marker(config: dict, args: argparse.Namespace, *parts: str) -> Path | None:
    if not getattr(args, "batch", None):
        return None
    return Path(config["results"]).joinpath(*parts, "batches", f"{args.batch}.tsv")


def _preprocess(args: argparse.Namespace) -> None:
    import torch

    from medcnn.tasks import subject_index_path
    from medcnn.transforms.preprocess import run_preprocess, run_preprocess_subject

    torch.set_num_threads(max(1, args.threads))
    config = load_config(args.config)
    results = Path(config["results"])
    subjects = _subjects(args, config)
    if not subjects and not args.batch:
        run_preprocess(config, args.task)
        return

    def one(subject: str) -> list[str]:
        run_preprocess_subject(config, args.task, subject)
        return [str(subject_index_path(results, args.task, subject).relative_to(results))]

    _for_each_subject(subjects, one, _marker(config, args, "preprocess", args.task), "preprocess")


def _split(args: argparse.Namespace) -> None:
    from medcnn.data.split import run_split

    run_split(load_config(args.config), args.task)


@contextlib.contextmanager
def _stage_device(config: dict, stage: str) -> Iterator[int]:
    """Claim the stage's GPUs (if any) and resolve ``device: auto`` for this job.

    ``auto`` means CUDA only when the stage asks for GPUs (``resources.<stage>.gpu``): a job
    that did not claim a device must not start on whichever GPU happens to be device 0.

    Yields:
        The number of CUDA devices the job may use (0 when it asked for none).
    """
    from medcnn.devices import claim_gpus

    gpus = config["resources"][stage].get("gpu", 0)
    with claim_gpus(gpus, config["resources"]["jobs_per_gpu"]):
        if config["device"] == "auto":
            config["device"] = "cuda" if gpus else "cpu"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        yield len([d for d in visible.split(",") if d.strip()]) if gpus else 0


def _train(args: argparse.Namespace) -> int:
    from medcnn.train import distributed

    config = load_config(args.config)
    with _stage_device(config, "train") as visible:
        nproc = distributed.processes(config["resources"]["train"].get("gpu", 0), visible)
        if config["tasks"][args.task]["kind"] != "classification":
            from medcnn.train.run_segmentation import run_train_segmentation

            if nproc > 1:
                log.warning("segmentation trains on one GPU (DDP is for classification)")
            run_train_segmentation(config, args.task, args.fold, threads=args.threads)
            return 0
        if distributed.should_relaunch(nproc):
            # Inside the claim: the GPUs stay locked while the DDP processes use them.
            return _run_ddp(args.argv, nproc)
        from medcnn.train.classifier import run_train

        train = run_train
        if os.environ.get(distributed.CHILD_ENV):
            from torch.distributed.elastic.multiprocessing.errors import record

            # torchrun's failure summary then names the rank and shows its traceback.
            train = record(run_train)
        train(config, args.task, args.fold, threads=args.threads)
    return 0


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM when this process dies, even by ``kill -9``.

    Otherwise torchrun and its ranks would go on training after the job was killed, on GPUs
    whose locks died with it.
    """
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run_ddp(argv: list[str], nproc: int) -> int:
    """Run ``medcnn <argv>`` again under ``torchrun`` in ``nproc`` processes; its exit code.

    SIGTERM/SIGINT/SIGHUP (a cancelled Snakemake or SLURM job) are passed on to torchrun,
    which stops every rank.
    """
    import signal
    import subprocess

    from medcnn.train import distributed

    command = distributed.relaunch_command(nproc, argv, sys.executable)
    log.info("DDP: training in %d processes: %s", nproc, " ".join(command))
    proc = subprocess.Popen(
        command,
        env={**os.environ, distributed.CHILD_ENV: "1"},
        preexec_fn=_die_with_parent,
    )
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, lambda signum, _: proc.send_signal(signum)) for s in forwarded}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code:
        log.error(
            "DDP training failed: torchrun exited with code %d (the failing rank and its "
            "error are above)",
            code,
        )
    return code


def _predict(args: argparse.Namespace) -> None:
    from medcnn.predict.classifier import run_predict

    config = load_config(args.config)
    if config["tasks"][args.task]["kind"] != "classification":
        from medcnn.predict.run_segmentation import run_predict_segmentation as run_predict

    def one(subject: str) -> list[str]:
        run_predict(config, args.task, subject, threads=args.threads)
        return [f"predict/{args.task}/{subject}.json"]

    with _stage_device(config, "predict"):
        _for_each_subject(
            _subjects(args, config), one, _marker(config, args, "predict", args.task), "predict"
        )


def _evaluate(args: argparse.Namespace) -> None:
    from medcnn.metrics.evaluation import run_evaluate

    run_evaluate(load_config(args.config), args.task)


def _saliency(args: argparse.Namespace) -> None:
    from medcnn.saliency.pipeline import run_saliency

    config = load_config(args.config)
    if config["tasks"][args.task]["kind"] != "classification":
        from medcnn.saliency.segmentation import run_saliency_segmentation as run_saliency

    def one(subject: str) -> list[str]:
        run_saliency(config, args.task, subject, threads=args.threads)
        return [f"saliency/{args.task}/{subject}/saliency.json"]

    with _stage_device(config, "saliency"):
        _for_each_subject(
            _subjects(args, config), one, _marker(config, args, "saliency", args.task), "saliency"
        )


def _report(args: argparse.Namespace) -> None:
    from medcnn.report.render import render_cohort, render_subject

    config = load_config(args.config)
    results = Path(config["results"])

    def one(subject: str) -> list[str]:
        html = Path(render_subject(config, subject))
        print(html)
        outputs = [html] + ([html.with_suffix(".pdf")] if config["report"]["pdf"] else [])
        return [str(Path(o).resolve().relative_to(results.resolve())) for o in outputs]

    subjects = _subjects(args, config)
    if subjects or args.batch:
        _for_each_subject(subjects, one, _marker(config, args, "reports"), "report")
    if args.cohort:
        print(render_cohort(config))


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
    step("ingest", _ingest, "input folders -> NIfTI, sidecars, manifest.tsv, quarantine.tsv")
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
