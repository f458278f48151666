"""The train stage: one fold of a task -> ``results/models/{task}/fold{k}/`` (a bundle).

A classification job that asks for several GPUs runs itself again under ``torchrun`` (DDP,
:mod:`medcnn.train.distributed`); segmentation trains in one process.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from medcnn.config import is_segmentation
from medcnn.devices import stage_device

log = logging.getLogger(__name__)


def run(config: dict[str, Any], name: str, fold: int, threads: int, argv: list[str]) -> int:
    """Train fold ``fold`` of task ``name``; the exit code (a DDP relaunch's, else 0).

    Args:
        argv: the ``medcnn`` command line of this job (a DDP job runs it again per rank).
    """
    from medcnn.train import distributed

    with stage_device(config, "train") as visible:
        nproc = distributed.processes(config["resources"]["train"].get("gpu", 0), visible)
        if is_segmentation(config["tasks"][name]):
            from medcnn.stages.train.segmentation import run_train_segmentation

            if nproc > 1:
                log.warning("segmentation trains on one GPU (DDP is for classification)")
            run_train_segmentation(config, name, fold, threads=threads)
            return 0
        if distributed.should_relaunch(nproc):
            # Inside the claim: the GPUs stay locked while the DDP processes use them.
            return distributed.run_ddp(argv, nproc)
        from medcnn.stages.train.classification import run_train

        train = run_train
        if os.environ.get(distributed.CHILD_ENV):
            from torch.distributed.elastic.multiprocessing.errors import record

            # torchrun's failure summary then names the rank and shows its traceback.
            train = record(run_train)
        train(config, name, fold, threads=threads)
    return 0
