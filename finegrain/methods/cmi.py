"""CMI: contrastive model inversion (Fang et al., IJCAI 2021); docs/methods.md (Baselines).

DFQ-style synthesis — the generator makes images with the teacher's BatchNorm statistics,
confident predictions and an adversarial push towards student–teacher disagreement — plus a
term for *diversity*: instance discrimination. Two differentiable random crops of each
synthetic image (:mod:`finegrain.datafree.views`) are embedded by a head on the teacher's
pooled features; a local view must find its own global view among the batch's other images and
among the embeddings of earlier batches kept in a FIFO memory bank
(:mod:`finegrain.datafree.memory_bank`). A generator that repeats itself cannot satisfy this.

    L_G = w_adv·(−KL(S, T)) + w_bn·L_BN + w_oh·L_oh + w_cr·L_contrast

The head trains with the generator. Every synthesized batch joins a growing image pool
(:class:`finegrain.datafree.pool.ImagePool`); the student learns by KD on random draws from the
pool, mirrored at random. finegrain's reading (spec, configurable): the head reads the
teacher's pooled penultimate features (CMI concatenates per-BatchNorm-layer instance means), the
one-hot target is the teacher's argmax (as DFQ's), the generator persists across iterations,
and the weights are CMI's CIFAR setting (adv 0.5, bn 1, oh 1, cr 0.8, τ 0.2).
"""

from __future__ import annotations

import torch

from finegrain.datafree.baseline import GeneratorBaseline
from finegrain.datafree.memory_bank import InstanceContrast, MemoryBank
from finegrain.datafree.pool import ImagePool
from finegrain.datafree.synthesizer import GeneratorSynthesizer, plain_generator_synthesizer
from finegrain.data.views import random_crop_view
from finegrain.methods import register_method
from finegrain.models.heads import ProjectionHead


class ContrastiveSynthesizer(GeneratorSynthesizer):
    """Generator + contrastive head (trained together) + memory bank + the image pool."""

    def __init__(self, generator, gen_cfg, mean, std, batch_size, num_classes: int = 0, *, feature_dim: int, head_dim: int,
                 bank_size: int, pool_size: int):
        super().__init__(generator, gen_cfg, mean, std, batch_size, num_classes)
        self.head = ProjectionHead(feature_dim, feature_dim, head_dim)
        self.bank = MemoryBank(bank_size, head_dim)
        self.pool = ImagePool(pool_size)
        self._batch = None

    def make_optimizer(self) -> torch.optim.Optimizer:
        optimizer = super().make_optimizer()
        optimizer.add_param_group({"params": list(self.head.parameters())})
        return optimizer

    def rank_local(self) -> list[str]:
        return ["pool.images"]

    def synthesize(self, objective) -> dict:
        images = self.generate(self.noise(self.batch_size))
        self._batch = images.detach()
        return objective(images)

    @torch.no_grad()
    def after_step(self) -> None:
        self.pool.add(self.normalizer.to_unit(self._batch))
        self.images_made += len(self._batch)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.draw_from_pool(n)


@register_method("cmi", "CMI: DFQ-style generator plus instance contrast against a memory bank; KD on a growing pool",
                 "Fang et al., IJCAI 2021, arXiv 2105.08584")
class CMI(GeneratorBaseline):
    config_sections = ("distill", "generator", "cmi")
    weights_section = "cmi"

    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names, **context)
        self.instance_contrast = InstanceContrast(cfg.cmi.temperature)

    def build_synthesizer(self) -> ContrastiveSynthesizer:
        c = self.cfg.cmi
        return plain_generator_synthesizer(self.cfg, ContrastiveSynthesizer, self.num_classes, feature_dim=self.teacher.feature_dim,
                                           head_dim=c.head_dim, bank_size=c.bank_size, pool_size=c.pool_size)

    def synthesis_objective(self, images: torch.Tensor) -> dict:
        losses, taps = self.priors(images, self.teacher, self.student, self.synthesizer.targets)
        local = self.teacher.forward_taps(random_crop_view(images, scale=(self.cfg.cmi.local_scale, 1.0))).pooled
        head, bank = self.synthesizer.head, self.synthesizer.bank
        anchor, positive = head(local), head(taps.pooled)
        contrast = self.instance_contrast(anchor, positive.detach(), bank.embeddings())
        bank.add(positive)
        losses["loss"] = losses["loss"] + self.cfg.cmi.contrast * contrast
        return {**losses, "contrast": contrast.detach()}
