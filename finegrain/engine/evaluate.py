"""Top-1, top-5, per-class accuracy and the confusion matrix, reduced across processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
