"""Synthesis by optimizing pixels directly (DeepInversion, Yin et al. CVPR 2020).

No generator: each iteration starts a new batch of Gaussian-noise pixels with random target
classes, optimizes them with Adam for ``steps_per_batch`` steps (the method's objective: make the
teacher predict the targets with real-data BatchNorm statistics and smooth pixels), then moves
the finished batch into an :class:`~finegrain.datafree.pool.ImagePool` the student samples from.
Each step sees the batch randomly shifted (jitter) and flipped, DeepInversion's cheap
augmentation against adversarial-noise solutions; pixels are clamped to the valid image range
after each step.
"""

from __future__ import annotations

import torch
from torch import nn

from finegrain.datafree.pool import ImagePool
from finegrain.datafree.synthesizer import Objective, Synthesizer


class PixelSynthesizer(Synthesizer):
    def __init__(self, image_size: int, num_classes: int, mean, std, batch_size: int, *, steps_per_batch: int,
                 lr: float = 0.1, betas=(0.5, 0.99), pool_capacity: int = 2048, jitter: int = 2, flip: bool = True,
                 grayscale: bool = False):
        super().__init__(mean, std, batch_size)
        self.num_classes, self.steps_per_batch = num_classes, steps_per_batch
        self.lr, self.betas, self.jitter, self.flip = lr, tuple(betas), jitter, flip
        #: one grey channel, shown to the teacher as three equal ones (a grey teacher never saw colour)
        self.grayscale = bool(grayscale)
        self.pixels = nn.Parameter(torch.randn(batch_size, 1 if self.grayscale else 3, image_size, image_size))
        self.register_buffer("targets", torch.zeros(batch_size, dtype=torch.long))
        self.register_buffer("progress", torch.zeros((), dtype=torch.long))
        self.pool = ImagePool(pool_capacity)
        self.view_flip = flip
        self._optimizer = None

    def make_optimizer(self) -> torch.optim.Optimizer:
        self._optimizer = torch.optim.Adam([self.pixels], lr=self.lr, betas=self.betas)
        return self._optimizer

    def rank_local(self) -> list[str]:
        return ["pixels", "targets", "progress", "pool.images"]

    @torch.no_grad()
    def _start_batch(self) -> None:
        self.pixels.normal_()
        self.targets.copy_(torch.randint(self.num_classes, self.targets.shape, device=self.targets.device))
        if self._optimizer is not None:
            self._optimizer.state.clear()   # a new batch owes nothing to the last one's moments

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        if self.jitter:
            dx, dy = (int(v) for v in torch.randint(-self.jitter, self.jitter + 1, (2,)))
            images = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
        if self.flip and bool(torch.rand(()) < 0.5):
            images = images.flip(3)
        return images

    def images(self) -> torch.Tensor:
        """The batch as the teacher reads it: the pixels, or the grey channel in every channel's
        normalization (grey pixels live in the first channel's normalized space)."""
        if not self.grayscale:
            return self.pixels
        mean, std = self.normalizer.mean, self.normalizer.std
        return self.normalizer(self.pixels * std[:, :1] + mean[:, :1])

    def synthesize(self, objective: Objective) -> dict:
        if int(self.progress) == 0:
            self._start_batch()
        return objective(self._augment(self.images()))

    @torch.no_grad()
    def after_step(self) -> None:
        low, high = self.normalizer.bounds()
        if self.grayscale:
            low, high = low[:, :1], high[:, :1]
        self.pixels.clamp_(min=low, max=high)
        self.progress += 1
        if int(self.progress) >= self.steps_per_batch:
            self.pool.add(self.normalizer.to_unit(self.images()))
            self.images_made += self.pixels.shape[0]
            self.progress.zero_()

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.draw_from_pool(n)
