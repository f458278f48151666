"""Train a binary image classifier (MONAI DenseNet121) on one fold of a patient-level split.

Writes ``results/models/{task}/fold{k}/``: the model bundle (``model.pt`` + ``bundle.json``),
``metrics.json``, ``history.csv``, and the task config and plans it was trained with.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.utils import set_determinism

from medcnn.data.index import read_index
from medcnn.data.split import subject_role
from medcnn.metrics.classification import auroc, youden_threshold
from medcnn.models.bundle import save_bundle
from medcnn.models.factory import build_network
from medcnn.transforms.radiograph import KEY, augment_transforms

log = logging.getLogger(__name__)


def pick_device(setting: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def load_items(folder: Path, index_rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Preprocessed arrays with their targets, as MONAI dictionary items."""
    return [
        {KEY: np.load(folder / r["array"]), "label": np.float32(r["target"]), "series": r["series"]}
        for r in index_rows
    ]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Logits for a stack of images ``(n, 1, size, size)``, in batches of 32."""
    model.eval()
    out = []
    for start in range(0, len(images), 32):
        batch = torch.as_tensor(images[start : start + 32], device=device)
        out.append(model(batch).float().cpu().numpy()[:, 0])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def run_train(config: dict[str, Any], name: str, fold: int, threads: int = 1) -> dict[str, Any]:
    """Train task ``name`` on fold ``fold``; returns the metrics written to ``metrics.json``."""
    task = config["tasks"][name]
    settings = task["train"]
    results = Path(config["results"])
    pre = results / "preprocess" / name
    out = results / "models" / name / f"fold{fold}"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, threads))
    set_determinism(seed=settings["seed"])
    device = pick_device(config["device"])

    plans = json.loads((pre / "plans.json").read_text())
    split = json.loads((results / "splits" / f"{name}.json").read_text())
    index = read_index(pre / "index.tsv")
    rows = [r for r in index.to_dict("records") if r["target"] != ""]
    train_rows = [r for r in rows if subject_role(split, r["subject"], fold) == "train"]
    val_rows = [r for r in rows if subject_role(split, r["subject"], fold) == "val"]
    if not train_rows or not val_rows:
        raise ValueError(f"task {name} fold {fold}: empty training or validation set")
    train_items = load_items(pre, train_rows)
    val_items = load_items(pre, val_rows)
    val_images = np.stack([it[KEY] for it in val_items])
    val_labels = np.array([it["label"] for it in val_items])

    transform = augment_transforms(plans["size"]) if settings["augment"] else None
    generator = torch.Generator().manual_seed(settings["seed"])
    loader = DataLoader(
        Dataset(train_items, transform=transform),
        batch_size=settings["batch_size"],
        shuffle=True,
        num_workers=settings["num_workers"],
        generator=generator,
        drop_last=len(train_items) > settings["batch_size"],
    )

    network = {"name": task["network"]["name"], "dims": 2, "in_channels": 1, "out_channels": 1}
    model = build_network(**network).to(device)
    n_pos = float(sum(it["label"] for it in train_items))
    # Weigh positives by the class ratio so a rare finding is not learnt as "always negative".
    pos_weight = torch.tensor([(len(train_items) - n_pos) / max(n_pos, 1.0)], device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings["learning_rate"], weight_decay=settings["weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=settings["learning_rate"],
        total_steps=settings["epochs"] * max(1, len(loader)),
        pct_start=0.15,
    )

    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"val_auroc": -1.0, "val_loss": float("inf")}
    best_state: dict[str, torch.Tensor] = {}
    best_probs = np.zeros(0)
    n_seen, train_seconds = 0, 0.0
    for epoch in range(1, settings["epochs"] + 1):
        model.train()
        start = time.perf_counter()
        losses = []
        for batch in loader:
            images = batch[KEY].to(device)
            labels = batch["label"].float().to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images)[:, 0], labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss))
            n_seen += len(images)
        train_seconds += time.perf_counter() - start
        logits = predict_logits(model, val_images, device)
        val_loss = float(
            torch.nn.functional.binary_cross_entropy_with_logits(
                torch.as_tensor(logits), torch.as_tensor(val_labels)
            )
        )
        val_auc = auroc(val_labels, logits)
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_loss": val_loss,
            "val_auroc": val_auc,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        log.info(
            "epoch %d/%d train_loss %.4f val_loss %.4f val_auroc %.3f (%.1fs)",
            epoch,
            settings["epochs"],
            record["train_loss"],
            val_loss,
            val_auc,
            record["seconds"],
        )
        # Best by validation AUROC, ties broken by the lower loss.
        # (An undefined AUROC, one class in validation, counts as 0 so a model is still kept.)
        score = val_auc if np.isfinite(val_auc) else 0.0
        if (score, -val_loss) > (best["val_auroc"], -best["val_loss"]):
            best = {"epoch": epoch, "val_auroc": score, "val_loss": val_loss}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_probs = 1.0 / (1.0 + np.exp(-logits))

    model.load_state_dict(best_state)  # set in epoch 1 at the latest (score >= 0 > -1)
    threshold = youden_threshold(val_labels, best_probs)
    metrics = {
        "task": name,
        "fold": fold,
        "best_epoch": best["epoch"],
        "val_auroc": best["val_auroc"],
        "val_loss": best["val_loss"],
        "threshold": threshold,
        "n_train_images": len(train_items),
        "n_val_images": len(val_items),
        "n_train_patients": len({r["subject"] for r in train_rows}),
        "n_val_patients": len({r["subject"] for r in val_rows}),
        "train_images_per_second": n_seen / train_seconds if train_seconds else 0.0,
        "device": str(device),
    }
    save_bundle(
        out,
        model,
        {
            "name": f"{name}-{network['name']}-fold{fold}",
            "task": name,
            "network": network,
            "plans": plans,
            "labels": [task["target"]["positive"]],
            "threshold": threshold,
            "metrics": metrics,
        },
    )
    with open(out / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(task, indent=2) + "\n")
    (out / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    return metrics
