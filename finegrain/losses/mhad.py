"""MHAD: mixed high-order attention distillation (DFKD-FGVC §4.2, Eq. 7).

Fine-grained classes differ in small parts, and the co-occurrence of parts is what tells them
apart. A mixed high-order attention (MHA) module (after Chen, Deng & Hu 2019) models that: for
order r it multiplies r separate 1×1 projections of the feature map elementwise (an r-th order
interaction), and the attention is the mean over orders 1..R of ``sigmoid(1×1 conv(ReLU(·)))``.
The student learns to reproduce the teacher's *attended* maps ``A(F)⊙F`` at every stage.

finegrain's reading (spec, configurable):

* the projections reduce channels ``C → C/reduction`` (4); orders are aggregated by the mean of
  their sigmoids;
* one MHA module per stage, shared by teacher and student, trained with the student's optimizer
  (``form="shared"``), or fixed at a seeded random init (``form="frozen_random"``);
* the student's map is adapted to the teacher's channels by a 1×1 conv and resized (bilinear) to
  the teacher's size;
* each side's attended map is L2-normalized per sample before the squared error. A shared,
  trainable module could otherwise reach zero loss by driving both attentions to zero; with
  unit-norm maps the loss is ``2 − 2·cos`` per sample and cannot be shrunk by scaling.
  ``reduction="batch_mean"`` averages that over the batch (scale 0..4 per stage, whatever the
  map size); ``"element_mean"`` divides further by the number of values (the literal MSE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


FORMS = ("shared", "frozen_random")
REDUCTIONS = ("batch_mean", "element_mean")


class MixedHighOrderAttention(nn.Module):
    """``A(F) ⊙ F`` with ``A`` the mean over orders r = 1..R of r-th order attention maps."""

    def __init__(self, channels: int, order: int = 3, reduction: int = 4):
        super().__init__()
        if order < 1:
            raise ValueError(f"MHA order must be >= 1, got {order}")
        hidden = max(1, channels // reduction)
        self.projections = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(channels, hidden, 1) for _ in range(r)) for r in range(1, order + 1))
        self.expand = nn.ModuleList(nn.Conv2d(hidden, channels, 1) for _ in range(order))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        maps = []
        for projections, expand in zip(self.projections, self.expand):
            interaction = projections[0](x)
            for projection in projections[1:]:
                interaction = interaction * projection(x)
            # ±30 saturates the sigmoid to within 1e-13 of 0/1 (zero gradient either way) and keeps
            # its values and gradients out of the denormal range, which x86 CPUs compute ~10× slower.
            maps.append(torch.sigmoid(expand(F.relu(interaction)).clamp(-30.0, 30.0)))
        return torch.stack(maps).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x) * x


def stage_indices(classifier, min_reduction: int = 4) -> list[int]:
    """Indices of the classifier's timm feature stages with stride >= ``min_reduction`` (skips
    the stem, so a ResNet gives layer1..layer4)."""
    reductions = [info["reduction"] for info in classifier.net.feature_info]
    return [i for i, r in enumerate(reductions) if r >= min_reduction]


def pair_stages(teacher, student, min_reduction: int = 4) -> tuple[list[int], list[int]]:
    """Teacher and student stage indices paired from the deepest stage down."""
    t, s = stage_indices(teacher, min_reduction), stage_indices(student, min_reduction)
    n = min(len(t), len(s))
    return t[len(t) - n:], s[len(s) - n:]


class MHADLoss(nn.Module):
    """Σ over stages of the distance between the teacher's and the (adapted) student's attended maps."""

    def __init__(self, teacher_channels: list[int], student_channels: list[int], *, order: int = 3,
                 reduction: int = 4, form: str = "shared", normalize: bool = True,
                 loss_reduction: str = "batch_mean", seed: int = 0):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"mhad form must be one of {FORMS}, got {form!r}")
        if loss_reduction not in REDUCTIONS:
            raise ValueError(f"mhad reduction must be one of {REDUCTIONS}, got {loss_reduction!r}")
        if len(teacher_channels) != len(student_channels):
            raise ValueError("teacher and student need the same number of paired stages")
        self.normalize, self.loss_reduction = normalize, loss_reduction
        self.adapters = nn.ModuleList(nn.Conv2d(cs, ct, 1, bias=False) for ct, cs in zip(teacher_channels, student_channels))
        with torch.random.fork_rng(devices=[]):
            if form == "frozen_random":
                torch.manual_seed(seed)
            self.attentions = nn.ModuleList(MixedHighOrderAttention(c, order, reduction) for c in teacher_channels)
        if form == "frozen_random":
            self.attentions.requires_grad_(False)

    def stage_distance(self, teacher_attended: torch.Tensor, student_attended: torch.Tensor) -> torch.Tensor:
        t, s = teacher_attended.flatten(1).float(), student_attended.flatten(1).float()
        if self.normalize:
            t, s = F.normalize(t, dim=1), F.normalize(s, dim=1)
        per_sample = (t - s).pow(2).sum(1)
        if self.loss_reduction == "element_mean":
            per_sample = per_sample / t.shape[1]
        return per_sample.mean()

    def forward(self, teacher_maps: list[torch.Tensor], student_maps: list[torch.Tensor]) -> torch.Tensor:
        total = None
        for t, s, adapter, attention in zip(teacher_maps, student_maps, self.adapters, self.attentions):
            s = adapter(s)
            if s.shape[-2:] != t.shape[-2:]:
                s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
            term = self.stage_distance(attention(t), attention(s))
            total = term if total is None else total + term
        return total
