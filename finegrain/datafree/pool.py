"""A growing pool of synthetic images (DeepInversion, CMI).

Pixel-optimizing synthesizers make one batch per iteration at a high cost; the student learns
from random draws over everything made so far instead of from the newest batch alone, which
keeps earlier classes and modes in its diet. Images are kept as [0, 1] pixels, by default
quantized to 8 bits as real photos are (4× smaller checkpoints). The pool is part of the
checkpoint (its size changes, so loading resizes it first), so a resumed run draws from the
same images.
"""

from __future__ import annotations

import torch
from torch import nn


class ImagePool(nn.Module):
    """First-in first-out store of at most ``capacity`` images in [0, 1] (0 = unbounded)."""

    def __init__(self, capacity: int = 0, quantize: bool = True):
        super().__init__()
        self.capacity, self.quantize = capacity, quantize
        self.register_buffer("images", torch.empty(0, 3, 1, 1, dtype=torch.uint8 if quantize else torch.float32))

    def __len__(self) -> int:
        return self.images.shape[0]

    @torch.no_grad()
    def add(self, unit_images: torch.Tensor) -> None:
        images = unit_images.detach().clamp(0, 1)
        images = (images * 255).round().to(torch.uint8) if self.quantize else images.float()
        images = images.to(self.images.device)
        merged = images if len(self) == 0 else torch.cat([self.images, images])
        if self.capacity and merged.shape[0] > self.capacity:
            merged = merged[-self.capacity:]
        self.images = merged.contiguous()

    def sample(self, n: int) -> torch.Tensor:
        """``n`` images drawn uniformly with replacement, as float [0, 1]."""
        if len(self) == 0:
            raise RuntimeError("the image pool is empty: synthesize before sampling")
        index = torch.randint(len(self), (n,), device=self.images.device)
        images = self.images[index]
        return images.float() / 255 if self.quantize else images

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "images"
        if key in state_dict:
            self.images = torch.empty_like(state_dict[key], device=self.images.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
