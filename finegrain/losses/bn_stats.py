"""BatchNorm-statistics matching: make synthetic images look, layer by layer, like the data
the teacher was trained on.

A trained network's BatchNorm layers store the running mean ``μ_l`` and variance ``σ²_l`` of
their inputs over the real training set. A synthetic batch whose per-layer statistics
``μ_l(x̂), σ²_l(x̂)`` match them is, to the teacher, statistically like real data
(DeepInversion, Yin et al. 2020; DFKD-FGVC Eq. 10):

    L_BN = Σ_l ‖μ_l − μ_l(x̂)‖₂ + ‖σ²_l − σ²_l(x̂)‖₂

The statistics of the batch come from :class:`finegrain.datafree.bn_hooks.BNStatsHooks`.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class BNStatsLoss(nn.Module):
    """Sum over layers of the L2 distances between batch and running mean and variance."""

    def forward(self, layer_stats: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``layer_stats``: (batch_mean, batch_var, running_mean, running_var) per BN layer."""
        total = None
        for mean, var, running_mean, running_var in layer_stats:
            term = torch.linalg.vector_norm(running_mean - mean) + torch.linalg.vector_norm(running_var - var)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("no BatchNorm statistics collected: does the teacher have BatchNorm layers?")
        return total
