"""CMI's memory of past synthetic samples and the instance-discrimination loss against it.

Contrastive Model Inversion (Fang et al., IJCAI 2021) keeps synthesized images *diverse* by
asking that each new sample be recognisable as itself: two views of the same synthetic image,
embedded by a small head on the teacher's features, must be closer to each other than to any
other sample of the batch or to any sample synthesized before. The "before" is a FIFO bank of
L2-normalized embeddings, so the generator is pushed away from what it already produced. The
bank is CSDNet's memory queue (:class:`finegrain.losses.queue_contrastive.MemoryQueue`): with
several processes every rank adds every rank's embeddings, so the banks stay identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from finegrain.losses.queue_contrastive import MemoryQueue


class MemoryBank(MemoryQueue):
    """CMI's bank: CSDNet's FIFO queue (gathered over ranks, saved with checkpoints) holding
    unit-norm embeddings without labels; built like the queue, ``MemoryBank(capacity, dim)``."""

    @torch.no_grad()
    def add(self, features: torch.Tensor) -> None:
        """Append (normalized, detached); once full, the oldest entries are overwritten first."""
        features = F.normalize(features.detach().float(), dim=1)
        self.enqueue(features, torch.full((len(features),), -1, dtype=torch.long, device=features.device))

    def embeddings(self) -> torch.Tensor:
        """The stored vectors, oldest first."""
        return self.contents()[0]


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
