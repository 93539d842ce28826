"""Top-1, top-5, per-class accuracy and the confusion matrix, reduced across processes.

Also the one place that evaluates a *saved* model on a dataset split (``finegrain eval``,
``finegrain report``, the benchmarks): the data section is rebuilt from the checkpoint's own
metadata, so the split is preprocessed exactly as the model's training data was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from finegrain.config import Config
from finegrain.data.dataset import FGVCDataset
from finegrain.data.formats import read_split
from finegrain.data.loaders import align_labels, make_loader
from finegrain.data.transforms import base_resize, eval_augment


@torch.no_grad()
def evaluate(model, loader, num_classes: int, *, fabric=None, device=None) -> dict:
    """Evaluate ``model`` (logits from images) on ``loader``; every rank returns the global result."""
    was_training = model.training
    model.eval()
    device = device or (fabric.device if fabric is not None else next(model.parameters()).device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    top5_hits = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        predictions = logits.argmax(1)
        confusion += torch.bincount(labels * num_classes + predictions, minlength=num_classes**2).view(num_classes, num_classes)
        k = min(5, num_classes)
        top5_hits += (logits.topk(k, dim=1).indices == labels[:, None]).any(1).sum()
    if fabric is not None and fabric.world_size > 1:
        confusion = fabric.all_reduce(confusion, reduce_op="sum")
        top5_hits = fabric.all_reduce(top5_hits, reduce_op="sum")
        loss_sum = fabric.all_reduce(loss_sum, reduce_op="sum")
    model.train(was_training)
    return summarize(confusion.cpu(), int(top5_hits), float(loss_sum))


def summarize(confusion: torch.Tensor, top5_hits: int, loss_sum: float) -> dict:
    n = int(confusion.sum())
    per_class_total = confusion.sum(1).clamp(min=1)
    per_class = (confusion.diag().double() / per_class_total.double()).tolist()
    return {
        "top1": 100.0 * float(confusion.diag().sum()) / max(1, n),
        "top5": 100.0 * top5_hits / max(1, n),
        "loss": loss_sum / max(1, n),
        "mean_class_acc": 100.0 * sum(per_class) / max(1, len(per_class)),
        "per_class_acc": [100.0 * a for a in per_class],
        "confusion": confusion.tolist(),
        "n": n,
    }


# ------------------------------------------------------------------------- a saved model on a split
def checkpoint_data_config(meta: dict, root=None, data_format=None):
    """The ``data`` section a checkpoint was trained with, its preprocessing (image size, crop
    ratio, mean/std) taken from the sidecar; ``root``/``data_format`` replace the stored ones."""
    data_cfg = Config.from_dict(meta.get("config", {}), meta["_path"]).data
    data_cfg.root = root or data_cfg.root
    data_cfg.format = data_format or data_cfg.format
    data_cfg.image_size, data_cfg.crop_ratio = meta["image_size"], meta["crop_ratio"]
    data_cfg.mean, data_cfg.std = meta["mean"], meta["std"]
    return data_cfg


def checkpoint_split(meta: dict, data_cfg, split: str) -> list[tuple[str, int]]:
    """``split`` of ``data_cfg``'s dataset as (path, label) with labels in the model's class order."""
    raw = read_split(data_cfg.format, data_cfg.root, split)
    return align_labels(raw, meta["class_names"], data_cfg.root, split)


def evaluate_checkpoint(model, meta, root=None, data_format=None, split="test", batch_size=64, num_workers=2,
                        device="cpu") -> dict:
    """:func:`evaluate` of a loaded checkpoint (``inference.classifier_from_checkpoint``) on ``split``."""
    data_cfg = checkpoint_data_config(meta, root, data_format)
    samples = checkpoint_split(meta, data_cfg, split)
    dataset = FGVCDataset(samples, meta["class_names"], base_resize(data_cfg.image_size, data_cfg.crop_ratio),
                          eval_augment(data_cfg), name=split)
    device = torch.device(device)
    loader = make_loader(dataset, batch_size, train=False, num_workers=num_workers, pin_memory=device.type == "cuda")
    return evaluate(model.to(device), loader, len(meta["class_names"]), device=device)
