"""SFCL: semantic feature contrast learning (DFKD-FGVC §4.3, Eqs. 8–9).

KL on logits tells the student *what* the teacher predicts; SFCL asks its penultimate features
to carry the same semantics, instance by instance. Teacher and student pooled features are each
mapped by an MLP to a common space and L2-normalized; for image i the teacher embedding is the
anchor, the student embedding of the same image the positive, and the other 2(N−1) embeddings of
the batch (teacher's and student's) the negatives — no labels, no teacher-argmax positives:

    L = −1/N Σ_i log( exp(t_i·s_i/τ) / Σ_{k ≠ t_i} exp(t_i·k/τ) ),  k over the 2N embeddings.

finegrain's reading (spec, configurable): each MLP is ``Linear → ReLU → Linear``; its hidden
width is the teacher's feature width, so that a student of another width is first mapped to the
teacher's (paper §5.2); output 128; τ = 0.07; ``anchors="both"`` also anchors the student side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from finegrain.models.heads import embed, projection_mlp

ANCHORS = ("teacher", "both")


def teacher_student_info_nce(zt: torch.Tensor, zs: torch.Tensor, temperature: float, anchors: str = "teacher") -> torch.Tensor:
    """InfoNCE over the 2N unit embeddings ``[zt; zs]``: anchor ``zt_i``, positive ``zs_i``."""
    n = zt.shape[0]
    everything = torch.cat([zt, zs])                       # 2N × d
    index = torch.arange(n, device=zt.device)

    def side(anchor, self_offset, positive_offset):
        logits = anchor @ everything.t() / temperature      # N × 2N
        logits = logits.masked_fill(F.one_hot(index + self_offset, 2 * n).bool(), float("-inf"))
        return F.cross_entropy(logits, index + positive_offset)

    loss = side(zt, 0, n)
    if anchors == "both":
        loss = 0.5 * (loss + side(zs, n, 0))
    return loss


class SemanticContrastLoss(nn.Module):
    """MLP heads on pooled features + the teacher–student InfoNCE."""

    def __init__(self, teacher_dim: int, student_dim: int, *, out_dim: int = 128, hidden_dim: int = 0,
                 temperature: float = 0.07, anchors: str = "teacher"):
        super().__init__()
        if anchors not in ANCHORS:
            raise ValueError(f"sfcl anchors must be one of {ANCHORS}, got {anchors!r}")
        hidden = hidden_dim or teacher_dim
        self.teacher_head = projection_mlp(teacher_dim, hidden, out_dim)
        self.student_head = projection_mlp(student_dim, hidden, out_dim)
        self.temperature, self.anchors = temperature, anchors

    def forward(self, teacher_features: torch.Tensor, student_features: torch.Tensor) -> torch.Tensor:
        zt = embed(self.teacher_head, teacher_features)
        zs = embed(self.student_head, student_features)
        return teacher_student_info_nce(zt, zs, self.temperature, self.anchors)
