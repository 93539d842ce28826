"""Projection heads: map pooled backbone features into the space a contrastive loss compares in.

Keeping the contrastive geometry in a small separate head (C → 512 → 128, L2-normalized, the
SimCLR/XBM habit) leaves the classifier's features free to stay linearly separable; the head is
dropped at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings, so that a dot product is a cosine similarity."""
        return F.normalize(self.net(features.float()), dim=1)
