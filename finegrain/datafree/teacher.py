"""The frozen teacher of a distillation, and the preprocessing it dictates.

A teacher is a finegrain checkpoint of a trained classifier. It never learns: its parameters do
not require gradients, and it stays in eval mode even when the method around it is put in train
mode, so its BatchNorm layers use (and never update) the running statistics of the real data —
which is what BatchNorm-statistics synthesis matches against. Gradients still flow *through* it
to synthetic images.

Its sidecar says how real images were preprocessed (size, crop ratio, mean/std) and names the
classes; a student distilled from it is evaluated, and its synthetic images normalized, the same
way.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from finegrain.engine import checkpoint as ckpt
from finegrain.errors import ConfigError


def _sidecar(path) -> dict:
    from finegrain.inference import resolve_checkpoint

    if not path:
        raise ConfigError("distill.teacher: no teacher checkpoint given (pass --teacher RUN_OR_CKPT)")
    return ckpt.read_sidecar(resolve_checkpoint(path))


@lru_cache(maxsize=8)
def teacher_meta(path: str) -> dict:
    """The teacher's sidecar: class names, image size, crop ratio, mean/std (no weights read)."""
    return _sidecar(path)


def apply_teacher_preprocessing(cfg) -> dict:
    """Set ``cfg.data`` image size, crop ratio and normalization to the teacher's; returns its meta."""
    meta = teacher_meta(str(cfg.distill.teacher) if cfg.distill.teacher else "")
    cfg.data.image_size = int(meta["image_size"])
    cfg.data.crop_ratio = float(meta["crop_ratio"])
    cfg.data.mean, cfg.data.std = list(meta["mean"]), list(meta["std"])
    return meta


class FrozenTeacher(nn.Module):
    """A classifier that cannot be trained: eval mode always, no parameter gradients."""

    def __init__(self, classifier, meta: dict):
        super().__init__()
        self.net = classifier
        self.net.requires_grad_(False)
        self.meta = meta
        self.class_names = list(meta["class_names"])
        self.image_size = int(meta["image_size"])
        self.crop_ratio = float(meta["crop_ratio"])
        self.mean, self.std = list(meta["mean"]), list(meta["std"])
        super().train(False)

    def train(self, mode: bool = True):
        """Ignore ``mode``: the teacher's BatchNorm statistics are the real data's and stay so."""
        return super().train(False)

    @property
    def arch(self) -> str:
        return self.net.arch

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_taps(self, x: torch.Tensor, *, stages: bool = False):
        return self.net.forward_taps(x, stages=stages)


def load_teacher(path) -> FrozenTeacher:
    from finegrain.inference import classifier_from_checkpoint

    _sidecar(path)  # a clear error for a missing path before anything else
    classifier, meta = classifier_from_checkpoint(path)
    return FrozenTeacher(classifier, meta)
