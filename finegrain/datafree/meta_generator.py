"""A meta-learned generator adapted for a few steps per batch (Fast-DFKD, Fang et al., AAAI 2022).

Why: a synthesizer that optimizes each batch from scratch (DeepInversion's pixels) spends
thousands of steps per batch re-discovering what every batch has in common — textures, colours,
the teacher's low-level features. Fast-DFKD keeps those *common features* in the weights ``θ`` of a
meta generator, learnt so that a few steps from it make a good batch; only what is particular to
a batch is left to the few steps.

A *round* makes one batch:

1. a fast copy ``θ' ← θ``, a fresh learnable latent ``z ~ N(0, I)`` and target classes ``y``
   drawn uniformly (one per image);
2. ``k`` Adam steps on ``(θ', z)`` (``k = steps_per_batch``) on the method's objective of
   ``x̂ = G(z; θ')`` — each step one ``synthesize`` call of the loop's ``generator`` phase, so a
   round may span iterations, with student steps in between, as DeepInversion's batches do
   (:mod:`finegrain.datafree.pixels`); the optimizer's moments start afresh every round;
3. the batch of the last step joins the image pool the student draws from, and the meta
   generator moves towards the adapted weights, first-order (Reptile, Nichol et al. 2018):

       θ ← θ + ε·(θ' − θ).

``ε = 1`` hands each batch's weights straight to the next (sequential reuse, the paper's Fig. 2b);
a smaller ``ε`` averages the adaptations of many batches, which is what leaves the common
features in ``θ``. Floating-point buffers (generator BatchNorm statistics) follow the same
average; the generator always runs on batch statistics, so they only matter to a reader of the
weights.

The meta generator gets no gradient (only the fast copy and the latent are optimized), so it is
the ``generator`` of the checkpoint and the one the Reptile step alone changes. Per-process state
(the latent, the targets, the pool) is rank-local under DDP; the fast copy's gradients are
averaged over ranks like any generator's, so every rank's meta generator stays the same.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from finegrain.datafree.pool import ImagePool
from finegrain.datafree.synthesizer import GeneratorSynthesizer, Objective


class MetaGeneratorSynthesizer(GeneratorSynthesizer):
    """``generator`` (θ, the meta generator), ``fast_generator`` (θ') and ``latent`` (z), the round's
    ``targets`` and ``progress`` (steps done in it), and the pool of finished batches.

    The latent is learnt per batch towards targets drawn for it, so no class vectors are added
    to it: the generator section's ``class_conditional`` (and ``target_ce``) are not used."""

    def __init__(self, generator: nn.Module, gen_cfg, mean, std, batch_size: int, num_classes: int = 0, *,
                 steps_per_batch: int, reptile_step: float, latent_lr: float, pool_capacity: int = 0):
        super().__init__(generator, dataclasses.replace(gen_cfg, class_conditional=False), mean, std, batch_size)
        if steps_per_batch < 1:
            raise ValueError(f"fast_dfkd.steps_per_batch must be >= 1, got {steps_per_batch}")
        if not 0.0 < reptile_step <= 1.0:
            raise ValueError(f"fast_dfkd.reptile_step must be in (0, 1], got {reptile_step}")
        if num_classes < 1:
            raise ValueError("a meta generator's batches need the number of classes to draw targets from")
        self.num_classes, self.steps_per_batch = num_classes, steps_per_batch
        self.reptile_step, self.latent_lr = reptile_step, latent_lr
        self.fast_generator = copy.deepcopy(generator)
        self.generator.requires_grad_(False)
        self.latent = nn.Parameter(torch.zeros(batch_size, generator.noise_dim))
        del self.targets  # a buffer here: a round's targets outlive a checkpoint taken inside it
        self.register_buffer("targets", torch.zeros(batch_size, dtype=torch.long))
        self.register_buffer("progress", torch.zeros((), dtype=torch.long))
        self.pool = ImagePool(pool_capacity)
        self._optimizer: torch.optim.Optimizer | None = None
        self._batch: torch.Tensor | None = None

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Adam on the fast copy (the ``generator`` section's lr, betas, weight decay) and on the
        latent (its own lr, no decay)."""
        self._optimizer = torch.optim.Adam(
            [{"params": list(self.fast_generator.parameters()), "weight_decay": self.cfg.weight_decay},
             {"params": [self.latent], "lr": self.latent_lr, "weight_decay": 0.0}],
            lr=self.cfg.lr, betas=tuple(self.cfg.betas))
        return self._optimizer

    def rank_local(self) -> list[str]:
        return ["latent", "targets", "pool.images"]

    @property
    def between_batches(self) -> bool:
        """No round under way: the next ``synthesize`` starts a new batch (true right after one finished)."""
        return int(self.progress) == 0

    @torch.no_grad()
    def start_round(self) -> None:
        """``θ' ← θ``, a fresh ``z`` and fresh targets; the optimizer forgets the last batch's moments."""
        self.fast_generator.load_state_dict(self.generator.state_dict())
        self.latent.normal_()
        self.targets.copy_(torch.randint(self.num_classes, self.targets.shape, device=self.targets.device))
        if self._optimizer is not None:
            self._optimizer.state.clear()

    def synthesize(self, objective: Objective) -> dict:
        if self.between_batches:
            self.start_round()
        images = self.generate(self.latent, self.fast_generator)
        self._batch = images.detach()
        return objective(images)

    @torch.no_grad()
    def after_step(self) -> None:
        """Count the step; after the round's last, pool its batch and take the Reptile step."""
        self.progress += 1
        if int(self.progress) < self.steps_per_batch:
            return
        self.progress.zero_()
        self.pool.add(self.normalizer.to_unit(self._batch))
        self.images_made += len(self._batch)
        self.reptile_update()

    @torch.no_grad()
    def reptile_update(self) -> None:
        """``θ ← θ + ε·(θ' − θ)`` for every floating-point entry; integer buffers (BatchNorm's batch
        counts) are taken from the fast copy."""
        adapted = self.fast_generator.state_dict()
        for name, value in self.generator.state_dict().items():
            if value.is_floating_point():
                value.lerp_(adapted[name], self.reptile_step)
            else:
                value.copy_(adapted[name])
