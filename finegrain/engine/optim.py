"""Optimizers and per-iteration learning-rate schedules from the ``optim``/``schedule`` sections."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR


def build_optimizer(param_groups, optim_cfg, *, lr: float | None = None) -> torch.optim.Optimizer:
    """``param_groups``: parameters or groups; a group may carry ``lr_scale``."""
    lr = optim_cfg.lr if lr is None else lr
    groups = list(param_groups)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    for group in groups:
        group["lr"] = lr * group.pop("lr_scale", 1.0)
    if optim_cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.momentum, nesterov=optim_cfg.nesterov,
                               weight_decay=optim_cfg.weight_decay)
    cls = torch.optim.AdamW if optim_cfg.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=lr, betas=tuple(optim_cfg.betas), weight_decay=optim_cfg.weight_decay)


def build_scheduler(optimizer, schedule_cfg, total_iterations: int, iterations_per_epoch: int):
    """Stepped once per iteration; warm-up is given in epochs."""
    total = max(1, total_iterations)
    if schedule_cfg.name == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        return OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total, pct_start=schedule_cfg.pct_start)
    if schedule_cfg.name == "constant":
        return LambdaLR(optimizer, lambda step: 1.0)
    warmup = int(schedule_cfg.warmup_epochs * iterations_per_epoch)
    floor = schedule_cfg.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def classifier_param_groups(classifier, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Backbone and new head as two groups, so a pretrained backbone can learn more slowly."""
    head_ids = {id(p) for p in classifier.head().parameters()}
    backbone = [p for p in classifier.parameters() if id(p) not in head_ids and p.requires_grad]
    head = [p for p in classifier.parameters() if id(p) in head_ids and p.requires_grad]
    return [{"params": backbone, "lr_scale": backbone_lr_scale}, {"params": head, "lr_scale": 1.0}]
