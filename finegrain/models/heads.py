"""Projection heads: map pooled backbone features into the space a contrastive loss compares in.

Keeping the contrastive geometry in a small separate head (C → 512 → 128, L2-normalized, the
SimCLR/XBM habit) leaves the classifier's features free to stay linearly separable; the head is
dropped at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear → ReLU → Linear``: the one projection shape (CSDNet, CMI, DFKD-FGVC's SFCL).

    A bare ``nn.Sequential`` so that its state-dict keys (``0.weight`` ...) are the same wherever
    it is held: checkpoints of every method that uses it keep loading."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


def embed(mlp: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Unit-length embeddings of ``features`` (in float32), so that a dot product is a cosine similarity."""
    return F.normalize(mlp(features.float()), dim=1)


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.net = projection_mlp(in_dim, hidden_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return embed(self.net, features)
