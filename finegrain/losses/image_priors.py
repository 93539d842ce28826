"""Natural-image priors on optimized pixels (DeepInversion, Yin et al. 2020).

Pixels optimized only to please a classifier turn into high-frequency noise. Two cheap priors
keep them image-like: total variation (neighbouring pixels should be similar) and an L2 penalty
(no pixel should run far outside the normalized data range).
"""

from __future__ import annotations

import torch
from torch import nn


class TotalVariation(nn.Module):
    """Mean absolute difference between horizontally and vertically adjacent pixels."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
        dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
        return dx + dy


class L2Prior(nn.Module):
    """``‖x‖²`` divided by the number of values (the mean squared pixel), so that one weight
    serves every image size."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.pow(2).mean()
