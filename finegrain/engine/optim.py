"""Optimizers and per-iteration learning-rate schedules from the ``optim``/``schedule`` sections."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

from finegrain.errors import ConfigError


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
    """Stepped once per iteration; warm-up is given in epochs. Every schedule can be given another
    length later (:func:`resize_schedule`), and its length is part of its ``state_dict``."""
    total = max(1, total_iterations)
    if schedule_cfg.name == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        return ResizableOneCycleLR(optimizer, max_lr=max_lrs, total_steps=total, pct_start=schedule_cfg.pct_start)
    if schedule_cfg.name == "constant":
        return LambdaLR(optimizer, ConstantFactor())
    warmup = int(schedule_cfg.warmup_epochs * iterations_per_epoch)
    return LambdaLR(optimizer, CosineFactor(total, warmup, schedule_cfg.min_lr_ratio))


def resize_schedule(scheduler, total_iterations: int) -> None:
    """Give ``scheduler`` a new length: the time budget sizes a run's iterations once it has measured
    its step time, and the learning rate must still reach its end on the last of them."""
    total = max(1, total_iterations)
    if isinstance(scheduler, ResizableOneCycleLR):
        scheduler.resize(total)
        return
    for factor in scheduler.lr_lambdas:
        factor.total = total


class ConstantFactor:
    """lr × 1 throughout (a callable object, not a lambda, so that LambdaLR's state_dict keeps it)."""

    total = 1

    def __call__(self, step: int) -> float:
        return 1.0


class CosineFactor:
    """Linear warm-up, then half a cosine from 1 down to ``floor`` at step ``total``.

    Its fields are plain attributes: LambdaLR's ``state_dict`` stores them, so a resumed run continues
    the very schedule (length included) that its checkpoint was written under."""

    def __init__(self, total: int, warmup: int, floor: float):
        self.total, self.warmup, self.floor = total, warmup, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


class ResizableOneCycleLR(OneCycleLR):
    """torch's one-cycle schedule whose length may be set again before it ends. Its phase
    boundaries (``_schedule_phases``, which torch keeps in the state_dict) move with the length."""

    def __init__(self, optimizer, *, pct_start: float, **kwargs):
        self.pct_start = pct_start
        super().__init__(optimizer, pct_start=pct_start, **kwargs)

    def resize(self, total: int) -> None:
        self.total_steps = total
        self._schedule_phases[0]["end_step"] = float(self.pct_start * total) - 1
        self._schedule_phases[-1]["end_step"] = total - 1


def freeze_through(model: nn.Module, name: str) -> int:
    """``optim.freeze_through``: the parameters of submodule ``name`` and of everything registered
    before it (the stem and the early blocks, for a timm CNN) stop learning; returns how many
    tensors were frozen.

    Why: early convolutions of a pretrained network are generic, and their backward pass at full
    resolution is a good part of a training step; a student learning from few or synthetic images
    keeps them as loaded and steps faster (a Lite0 student step at 128 px on one CPU thread:
    ~30 % less time with ``blocks.3``). timm's own ``freeze`` also swaps BatchNorm layers for
    frozen copies, which would change the checkpoint's keys; BatchNorm statistics have their own
    key here (``distill.student_bn``). Frozen parameters are simply left out of the optimizer.
    """
    if not name:
        return 0
    frozen, inside = [], False
    for module_name, module in model.named_modules():  # registration order, as model.parameters()
        in_subtree = module_name == name or module_name.startswith(name + ".")
        if inside and not in_subtree:
            break
        inside = inside or in_subtree
        frozen += module.parameters(recurse=False)
    if not inside:
        top = ", ".join(n for n, _ in model.named_children())
        raise ConfigError(f"optim.freeze_through: {name!r} is not a submodule of {type(model).__name__} "
                          f"(its top-level ones: {top})")
    for p in frozen:
        p.requires_grad_(False)
    return len(frozen)


def classifier_param_groups(classifier, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Backbone and new head as two groups, so a pretrained backbone can learn more slowly."""
    head_ids = {id(p) for p in classifier.head().parameters()}
    backbone = [p for p in classifier.parameters() if id(p) not in head_ids and p.requires_grad]
    head = [p for p in classifier.parameters() if id(p) in head_ids and p.requires_grad]
    return [{"params": backbone, "lr_scale": backbone_lr_scale}, {"params": head, "lr_scale": 1.0}]
