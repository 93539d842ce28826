"""Attention transfer (Zagoruyko & Komodakis 2017), the student-side term of ZSKT.

A stage's *spatial attention* is how strongly each position fires, summed over channels:
``a = mean_c |F_c|^p``, flattened and L2-normalized per sample so that only *where* a network
looks matters, not how large its activations are. The student learns to match the teacher's
map at each stage; maps of different sizes are resized to the teacher's before comparison, so
any pair of backbones with the same number of stages works.

ZSKT (Micaelli & Storkey, NeurIPS 2019) uses p = 2 and the mean squared difference of the
normalized maps, weighted by β = 250; finegrain keeps p and the weight configurable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def spatial_attention(feature_map: torch.Tensor, p: float = 2.0, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``B×C×H×W`` -> ``B×(H·W)`` unit-norm attention; resized to ``size`` (H, W) first if given."""
    attention = feature_map.abs().pow(p).mean(dim=1, keepdim=True)
    if size is not None and tuple(attention.shape[-2:]) != tuple(size):
        attention = F.interpolate(attention, size=size, mode="bilinear", align_corners=False)
    return F.normalize(attention.flatten(1), dim=1)


class AttentionTransfer(nn.Module):
    """Mean over stage pairs of the mean squared difference of normalized attention maps."""

    def __init__(self, p: float = 2.0):
        super().__init__()
        self.p = p

    def forward(self, student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> torch.Tensor:
        if len(student_maps) != len(teacher_maps) or not teacher_maps:
            raise ValueError(f"attention transfer needs matching stages, got {len(student_maps)} student "
                             f"and {len(teacher_maps)} teacher maps")
        terms = []
        for s, t in zip(student_maps, teacher_maps):
            size = tuple(t.shape[-2:])
            a_t = spatial_attention(t.detach(), self.p)
            a_s = spatial_attention(s, self.p, size)
            terms.append((a_s - a_t).pow(2).mean())
        return torch.stack(terms).mean()
