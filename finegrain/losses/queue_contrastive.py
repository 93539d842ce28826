"""CSDNet's DDL: a memory queue of past embeddings and the contrastive loss with margin against it.

Few-shot batches hold one or two images of a class, so a batch alone has almost no positive
pairs and few hard negatives. A FIFO queue of embeddings from earlier iterations (cross-batch
memory, XBM, Wang et al. CVPR 2020 — finegrain's reading of the paper's "dynamic memory queue")
gives every sample many more pairs at no extra forward cost. The queue stores detached
embeddings with their labels as registered buffers, so a checkpoint carries it; under DDP each
rank enqueues the embeddings of *all* ranks (gathered first), as MoCo does, so every rank holds
the same queue.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def distributed_world() -> tuple[int, int]:
    """(world size, rank); (1, 0) without an initialized process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_per_rank(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (first dim may differ per rank), in rank order; ``[tensor]`` without DDP."""
    if distributed_world()[0] == 1:
        return [tensor]
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return [part[: int(n.item())] for part, n in zip(parts, sizes)]


def gather_from_all_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` over all ranks; identity without DDP."""
    return torch.cat(gather_per_rank(tensor))


class MemoryQueue(nn.Module):
    """FIFO ring buffer of ``capacity`` (embedding, label) pairs."""

    def __init__(self, capacity: int, dim: int):
        super().__init__()
        if capacity <= 0:
            raise ValueError(f"queue capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self.register_buffer("features", torch.zeros(capacity, dim))
        self.register_buffer("labels", torch.full((capacity,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.filled)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored (features, labels), oldest first."""
        n, ptr = int(self.filled), int(self.pointer)
        order = torch.arange(n, device=self.features.device)
        if n == self.capacity:
            order = (order + ptr) % self.capacity
        return self.features[order], self.labels[order]

    @torch.no_grad()
    def enqueue(self, features: torch.Tensor, labels: torch.Tensor, *, gather: bool = True) -> None:
        """Add a batch (all ranks' when ``gather``), overwriting the oldest entries."""
        features, labels = features.detach(), labels.detach()
        if gather:
            features, labels = gather_from_all_ranks(features), gather_from_all_ranks(labels)
        features, labels = features[-self.capacity:], labels[-self.capacity:]
        n, ptr = features.shape[0], int(self.pointer)
        slots = (torch.arange(n, device=self.features.device) + ptr) % self.capacity
        self.features[slots] = features.to(self.features.dtype)
        self.labels[slots] = labels.to(self.labels.dtype)
        self.pointer.fill_((ptr + n) % self.capacity)
        self.filled.fill_(min(self.capacity, int(self.filled) + n))


class QueueContrastiveLoss(nn.Module):
    """``L_qc = (1/B) Σ_i [ Σ_{y_j=y_i} (1 − s_ij) + Σ_{y_j≠y_i, s_ij>ξ} s_ij ]`` (docs/methods.md, CSDNet: DDL).

    ``s_ij = z_i·q_j`` over the entries ``q_j`` of the current batch (self excluded) and of the
    memory; ``z`` are L2-normalized, so positives are pulled to similarity 1 and negatives are
    pushed below the margin ``ξ``, and only negatives still above it cost anything.

    The sums are that formula (finegrain's reading of the paper): each anchor's cost grows with the
    number of its pairs, so with the queue's length (a 1,960-entry queue on Cars-196 at K = 5 gives
    ~10× the hard-negative sum of a 170-entry one on Oxford-17) and α must shrink with it.
    """

    def __init__(self, margin: float = 0.5):
        super().__init__()
        self.margin = margin

    def forward(self, z: torch.Tensor, labels: torch.Tensor, memory: torch.Tensor | None = None,
                memory_labels: torch.Tensor | None = None) -> torch.Tensor:
        batch = z.shape[0]
        keys, key_labels = z, labels
        if memory is not None and memory.shape[0]:
            keys = torch.cat([z, memory.detach().to(z.dtype)])
            key_labels = torch.cat([labels, memory_labels])
        similarity = z @ keys.T
        same = labels[:, None] == key_labels[None, :]
        not_self = torch.ones_like(same)
        not_self[:, :batch].fill_diagonal_(False)
        positive = same & not_self
        hard_negative = ~same & (similarity > self.margin)
        pull, push = ((1 - similarity) * positive).sum(1), (similarity * hard_negative).sum(1)
        return (pull + push).sum() / batch
