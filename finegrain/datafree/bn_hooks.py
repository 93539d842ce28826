"""Forward hooks that read, per BatchNorm layer of the teacher, the mean and variance of the
synthetic batch entering it — the inputs of :class:`finegrain.losses.bn_stats.BNStatsLoss`.

The hooks only record inside :meth:`BNStatsHooks.collect`, so the teacher's other forward
passes (the student step's soft targets) pay nothing and keep no graph alive.
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn


class BNStatsHooks:
    """Per-layer (batch mean, batch variance, running mean, running variance) of ``module``'s BN layers."""

    def __init__(self, module: nn.Module):
        self.layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.enabled = False
        self.stats: list = []
        self.handles = [layer.register_forward_hook(self._record) for layer in self.layers]

    def _record(self, layer, inputs, output) -> None:
        if not self.enabled:
            return
        x = inputs[0].float()
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        self.stats.append((mean, var, layer.running_mean.float(), layer.running_var.float()))

    @contextmanager
    def collect(self):
        """Inside: every BN layer the forward pass reaches appends its statistics to the yielded list."""
        self.stats = []
        self.enabled = True
        try:
            yield self.stats
        finally:
            self.enabled = False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
