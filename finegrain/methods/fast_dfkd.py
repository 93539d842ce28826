"""Fast-DFKD (Fang et al., AAAI 2022, "Up to 100× faster data-free knowledge distillation");
docs/methods.md (Baselines).

Model inversion makes good synthetic images but costs thousands of steps per batch, because
every batch is optimized from nothing. Fast-DFKD observes that batches share most of their
features and learns them once, in a *meta generator* whose weights are a starting point from
which a few steps make a new batch (:mod:`finegrain.datafree.meta_generator`). Per batch, a fast
copy of the generator and a fresh latent ``z`` are optimized for ``k`` steps on the inversion loss

    L = w_bn·L_BN^m + w_ce·CE(T(x̂), y) − w_adv·KL(S(x̂), T(x̂))·1[argmax S(x̂) = argmax T(x̂)],

with ``y`` target classes drawn for the batch, then the meta generator takes the Reptile step
``θ ← θ + ε·(θ' − θ)`` and the batch joins the image pool, from which the student learns by KD
(the distiller's KL, as for every data-free method here).

* ``L_BN^m`` matches the teacher's BatchNorm statistics with a momentum over batches
  (:mod:`finegrain.datafree.bn_momentum`): a batch made in a few steps need only make up what the
  batches before it missed, since the student learns from all of them;
* the adversarial term looks for images on which the student would start to disagree with the
  teacher, but only among those on which the two still agree: an image they already disagree on
  is not pushed further from anything the teacher knows. It is off until the student has taken a
  step (the paper's code has no adversary during its warm-up epochs either: a student that has
  learnt nothing is no critic).

Settings (``fast_dfkd`` section): ``k`` (paper: 2/5/10), the weights (bn 10, ce 0.5, adversarial 1.33:
the ResNet-34 → ResNet-18 settings of the authors' CIFAR scripts), the momentum 0.9, the latent's
lr. finegrain's reading: the Reptile step ``ε`` (the code steps Adam along first-order meta
gradients instead), the pool batch is the last inner step's (the authors' ImageNet synthesizer;
their CIFAR one keeps the round's lowest-loss batch), no crop/flip augmentation before the teacher
and no re-initialization of the generator's first layer mid-run (code-only tricks). The generator
is the ``generator`` section's DCGAN without spatial attention, as for every baseline; the pool is
``distill.pool_size`` (0 = keep every batch, the paper's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from finegrain.datafree.bn_hooks import BNStatsHooks
from finegrain.datafree.bn_momentum import MomentumBNStats
from finegrain.datafree.distiller import DataFreeDistiller
from finegrain.datafree.meta_generator import MetaGeneratorSynthesizer
from finegrain.datafree.synthesizer import plain_generator_synthesizer
from finegrain.errors import ConfigError
from finegrain.losses.bn_stats import BNStatsLoss
from finegrain.methods import register_method


def check_settings(section) -> None:
    """The ``fast_dfkd`` keys a run cannot use, as a one-line config error naming the key."""
    if section.steps_per_batch < 1:
        raise ConfigError(f"fast_dfkd.steps_per_batch must be >= 1, got {section.steps_per_batch}")
    if not 0.0 < section.reptile_step <= 1.0:
        raise ConfigError(f"fast_dfkd.reptile_step must be in (0, 1], got {section.reptile_step}")
    if not 0.0 <= section.bn_momentum < 1.0:
        raise ConfigError(f"fast_dfkd.bn_momentum must be in [0, 1), got {section.bn_momentum}")
    if section.latent_lr <= 0:
        raise ConfigError(f"fast_dfkd.latent_lr must be > 0, got {section.latent_lr}")


def agreement_adversary(kd_loss, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``mean_i KL_i·1[S and T predict the same class for image i]``: the disagreement the generator
    maximizes, counted only where there is still agreement to break (0 where there is none)."""
    agree = student_logits.argmax(1) == teacher_logits.argmax(1)
    if not bool(agree.any()):
        return student_logits.sum() * 0.0  # zero, still part of the graph
    return kd_loss(student_logits[agree], teacher_logits[agree]) * agree.float().mean()


@register_method("fast-dfkd", "Fast-DFKD: a meta-learned generator adapted in a few steps per batch (Reptile); "
                              "KD on a growing pool", "Fang et al., AAAI 2022, arXiv 2112.06253")
class FastDFKD(DataFreeDistiller):
    config_sections = ("distill", "generator", "fast_dfkd")

    def __init__(self, cfg, class_names, **context):
        check_settings(cfg.fast_dfkd)
        super().__init__(cfg, class_names, **context)
        self.bn_hooks = BNStatsHooks(self.teacher)
        self.bn_momentum = MomentumBNStats(cfg.fast_dfkd.bn_momentum)
        self.register_buffer("student_updates", torch.zeros((), dtype=torch.long))
        # batch statistics are each process's own, like its latent and pool
        self._ddp_params_and_buffers_to_ignore += ["bn_momentum.means", "bn_momentum.variances"]
        self.bn_loss = BNStatsLoss()
        d, per_batch = cfg.distill, cfg.fast_dfkd.steps_per_batch
        if per_batch > d.warmup_steps + d.generator_steps:
            raise ConfigError(f"fast_dfkd.steps_per_batch={per_batch}: the pool would still be empty at the first "
                              f"student step; set distill.warmup_steps >= {per_batch - d.generator_steps}")

    def build_synthesizer(self) -> MetaGeneratorSynthesizer:
        f = self.cfg.fast_dfkd
        return plain_generator_synthesizer(self.cfg, MetaGeneratorSynthesizer, self.num_classes,
                                           steps_per_batch=f.steps_per_batch, reptile_step=f.reptile_step,
                                           latent_lr=f.latent_lr, pool_capacity=self.cfg.distill.pool_size)

    def synthesis_objective(self, images: torch.Tensor) -> dict:
        w = self.cfg.fast_dfkd
        with self.bn_hooks.collect() as stats:
            teacher_logits = self.teacher(images)
        bn = self.bn_loss(self.bn_momentum.blend(stats))
        ce = F.cross_entropy(teacher_logits, self.synthesizer.targets)
        loss = w.bn * bn + w.ce * ce
        logs = {"bn": bn.detach(), "ce": ce.detach()}
        if w.adversarial:
            adversary = (agreement_adversary(self.kd_loss, self.student(images), teacher_logits)
                         if int(self.student_updates) else loss.new_zeros(()))
            loss = loss - w.adversarial * adversary
            logs["adversarial"] = adversary.detach()
        return {"loss": loss, **logs}

    def on_optimizer_step(self, phase: str) -> None:
        super().on_optimizer_step(phase)
        if phase == "generator" and self.synthesizer.between_batches:  # a batch was just finished
            self.bn_momentum.update()
        elif phase == "student":
            self.student_updates += 1
