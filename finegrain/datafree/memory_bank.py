"""CMI's memory of past synthetic samples and the instance-discrimination loss against it.

Contrastive Model Inversion (Fang et al., IJCAI 2021) keeps synthesized images *diverse* by
asking that each new sample be recognisable as itself: two views of the same synthetic image,
embedded by a small head on the teacher's features, must be closer to each other than to any
other sample of the batch or to any sample synthesized before. The "before" is a FIFO bank of
L2-normalized embeddings, so the generator is pushed away from what it already produced.

With several processes each rank adds every rank's embeddings (``all_gather``), so the banks
stay identical — which is also what DDP's buffer broadcast assumes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _gather(x: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class MemoryBank(nn.Module):
    """A first-in, first-out store of ``size`` unit-norm ``dim``-vectors (saved with checkpoints)."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        if size <= 0:
            raise ValueError(f"memory bank size must be > 0, got {size}")
        self.size = size
        self.register_buffer("features", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def add(self, features: torch.Tensor) -> None:
        """Append (normalized, detached); once full, the oldest entries are overwritten first."""
        features = F.normalize(_gather(features.detach().float()), dim=1)[-self.size:]
        slots = (self.pointer + torch.arange(len(features), device=self.features.device)) % self.size
        self.features[slots] = features.to(self.features.dtype)
        self.pointer.copy_((self.pointer + len(features)) % self.size)
        self.count.copy_(torch.clamp(self.count + len(features), max=self.size))

    def contents(self) -> torch.Tensor:
        """The stored vectors, oldest first."""
        if int(self.count) < self.size:
            return self.features[: int(self.count)]
        return torch.roll(self.features, shifts=-int(self.pointer), dims=0)


class InstanceContrast(nn.Module):
    """InfoNCE of instance discrimination: view 1 of sample i must pick view 2 of sample i.

    Candidates are the batch's second views (the other samples are negatives) plus the bank's
    entries (all negatives). Inputs are normalized here; ``temperature`` is CMI's τ.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, bank: torch.Tensor | None = None) -> torch.Tensor:
        anchor, positive = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
        candidates = positive if bank is None or len(bank) == 0 else torch.cat([positive, bank.to(positive.dtype)])
        logits = anchor @ candidates.t() / self.temperature
        return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))
