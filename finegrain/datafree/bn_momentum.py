"""BatchNorm-statistics matching with a momentum over synthesis rounds (Fast-DFKD's feature
regularization).

:class:`~finegrain.losses.bn_stats.BNStatsLoss` asks one synthetic batch to have, at every teacher
BatchNorm layer, the real data's mean ``μ_l`` and variance ``σ²_l``. A method that makes a new
batch in only a few steps (Fast-DFKD) cannot get one small batch there, and need not: the student
learns from the pool of every batch made, so it is the pool whose statistics should be the real
data's. Fast-DFKD therefore matches a moving average instead of the batch alone,

    L_BN = Σ_l ‖μ_l − ((1 − m)·μ_l(x̂) + m·μ̄_l)‖₂
             + ‖σ²_l − ((1 − m)·σ²_l(x̂) + m·σ̄²_l)‖₂,

where ``μ̄_l, σ̄²_l`` average the statistics of earlier rounds' batches (detached, so the new batch
makes up what the earlier ones missed) and are updated once per round with the finished batch's:
``μ̄ ← m·μ̄ + (1 − m)·μ(x̂)``. The first round, with nothing to average yet, matches the batch alone;
``m = 0`` is the plain loss.

The averages are buffers, so a resumed run continues them. Their length (the teacher's BatchNorm
channels, in the order the forward pass reaches the layers) is known at the first update, and a
checkpoint's buffers are loaded whatever that length (as :class:`~finegrain.datafree.pool.ImagePool`
does).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

LayerStats = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class MomentumBNStats(nn.Module):
    """``blend(stats)`` mixes each layer's batch moments with the running average of earlier rounds;
    ``update()`` folds the moments of the batch ``blend`` saw last into that average."""

    def __init__(self, momentum: float):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"BatchNorm-statistics momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("means", torch.empty(0))
        self.register_buffer("variances", torch.empty(0))
        self._latest: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def started(self) -> bool:
        return self.means.numel() > 0

    def blend(self, layer_stats: Sequence[LayerStats]) -> list[LayerStats]:
        """``(batch mean, batch var, running mean, running var)`` per layer, the batch moments mixed
        with the average (gradients flow through the batch's share only). Remembers the batch
        moments for :meth:`update`."""
        stats = list(layer_stats)
        self._latest = [(mean.detach(), var.detach()) for mean, var, _, _ in stats]
        if not self.started or self.momentum == 0:
            return stats
        sizes = [mean.numel() for mean, _, _, _ in stats]
        if sum(sizes) != self.means.numel():
            raise ValueError(f"the teacher's BatchNorm layers have {sum(sizes)} channels, the averaged statistics "
                             f"{self.means.numel()}: another teacher?")
        m = self.momentum
        return [((1 - m) * mean + m * past_mean, (1 - m) * var + m * past_var, running_mean, running_var)
                for (mean, var, running_mean, running_var), past_mean, past_var
                in zip(stats, self.means.split(sizes), self.variances.split(sizes))]

    @torch.no_grad()
    def update(self) -> None:
        """End of a round: ``μ̄ ← m·μ̄ + (1 − m)·μ(x̂)`` with the moments :meth:`blend` saw last
        (the first round's moments start the average)."""
        if self._latest is None or self.momentum == 0:
            return
        means = torch.cat([mean.float().flatten() for mean, _ in self._latest])
        variances = torch.cat([var.float().flatten() for _, var in self._latest])
        self._latest = None
        if not self.started:
            self.means, self.variances = means, variances
            return
        self.means.mul_(self.momentum).add_(means, alpha=1 - self.momentum)
        self.variances.mul_(self.momentum).add_(variances, alpha=1 - self.momentum)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("means", "variances"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
