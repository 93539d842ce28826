"""DeepInversion / ADI (Yin et al., CVPR 2020); docs/methods.md (Baselines).

"Dreaming to distill": invert the teacher instead of training a generator. Each iteration a new
batch of noise pixels with random target classes ``y`` is optimized for ``t`` steps on

    CE(T(x), y) + λ_bn·L_BN + λ_tv·TV(x) + λ_l2·‖x‖²  [+ λ_adi·(1 − JS(T(x), S(x)))]

— the teacher should predict ``y`` with BatchNorm statistics like the real data's, on smooth,
bounded pixels. ADI's adaptive term rewards images on which student and teacher disagree, so
new batches cover what the student has not learnt yet (``adi_scale = 0`` is plain DeepInversion).
Finished batches join a growing pool; the student learns by KD on draws from the pool. The
student's KD loss is the framework's (``distill.temperature``, ``distill.kl_direction``), as for
every data-free method here, so comparisons isolate the synthesizer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from finegrain.datafree.bn_hooks import BNStatsHooks
from finegrain.datafree.distiller import DataFreeDistiller
from finegrain.datafree.pixels import PixelSynthesizer
from finegrain.errors import ConfigError
from finegrain.losses.bn_stats import BNStatsLoss
from finegrain.losses.image_priors import L2Prior, TotalVariation
from finegrain.losses.kd import JensenShannon
from finegrain.methods import register_method


@register_method("deepinversion", "DeepInversion/ADI: optimize pixels to the teacher's BN statistics, KD on a growing pool",
                 "Yin et al., CVPR 2020, arXiv 1912.08795")
class DeepInversion(DataFreeDistiller):
    config_sections = ("distill", "deepinversion")

    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names, **context)
        self.bn_hooks = BNStatsHooks(self.teacher)
        self.bn_loss, self.tv, self.l2, self.js = BNStatsLoss(), TotalVariation(), L2Prior(), JensenShannon()
        d, per_batch = cfg.distill, self.synthesizer.steps_per_batch
        if per_batch > d.warmup_steps + d.generator_steps:
            raise ConfigError(f"deepinversion.steps_per_batch={per_batch}: the pool would still be empty at the first "
                              f"student step; set distill.warmup_steps >= {per_batch - d.generator_steps}")

    def build_synthesizer(self) -> PixelSynthesizer:
        d, di = self.cfg.data, self.cfg.deepinversion
        return PixelSynthesizer(d.image_size, self.num_classes, d.mean, d.std, self.batch_size,
                                steps_per_batch=di.steps_per_batch or self.cfg.distill.generator_steps,
                                lr=di.lr, betas=di.betas,
                                pool_capacity=di.pool_size, jitter=di.jitter, flip=di.flip, grayscale=di.grayscale)

    def synthesis_objective(self, images: torch.Tensor) -> dict:
        di = self.cfg.deepinversion
        with self.bn_hooks.collect() as stats:
            teacher_logits = self.teacher(images)
        ce = F.cross_entropy(teacher_logits, self.synthesizer.targets)
        bn = self.bn_loss(stats)
        tv, l2 = self.tv(images), self.l2(images)
        loss = ce + di.bn_weight * bn + di.tv_weight * tv + di.l2_weight * l2
        logs = {"ce": ce.detach(), "bn": bn.detach(), "tv": tv.detach()}
        if di.adi_scale:
            js = self.js(self.student(images), teacher_logits)
            loss = loss + di.adi_scale * (1.0 - js.clamp(0, 1))
            logs["js"] = js.detach()
        return {"loss": loss, **logs}
