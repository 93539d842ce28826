"""An exponential-moving-average copy of a network, MAD's memory of its generator.

Momentum Adversarial Distillation (Do et al., NeurIPS 2022) keeps ``G_ema`` with
``θ_ema ← m·θ_ema + (1 − m)·θ`` after every generator step. Because it moves slowly, its
samples still resemble what the generator produced many steps ago, and the student learning
from them does not forget earlier synthetic distributions while the adversarial generator
chases new ones. Buffers (BatchNorm statistics) are averaged the same way; integer buffers are
copied. The copy never receives gradients.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EmaCopy(nn.Module):
    """Holds ``copy.deepcopy(module)`` and averages it towards ``module`` on :meth:`update`."""

    def __init__(self, module: nn.Module, momentum: float):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self.module = copy.deepcopy(module)
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        m = self.momentum
        for ema, live in zip(self.module.parameters(), source.parameters()):
            ema.mul_(m).add_(live.detach(), alpha=1.0 - m)
        for ema, live in zip(self.module.buffers(), source.buffers()):
            if ema.is_floating_point():
                ema.mul_(m).add_(live.detach(), alpha=1.0 - m)
            else:
                ema.copy_(live)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
