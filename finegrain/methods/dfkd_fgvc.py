"""DFKD-FGVC: data-free knowledge distillation for fine-grained visual categorization.

Shao, Zhang, Yin & Wang, ICCV 2023 (arXiv 2404.12037); docs/methods.md (DFKD-FGVC).

A student learns a trained fine-grained teacher without any real training image. Per iteration
(DF stage), ``t = 20`` generator steps then ``k = 15`` student steps, fresh noise every step.

(a) **Attention generator** — a DCGAN with a spatial attention module in every block
    (:class:`finegrain.models.generator.AttentionGenerator`, λ = ``generator.attention_lambda``).

(b) **Generator objective** (Eq. 10): ``min_G α·L_BN − L_KD``, α = 0.3 (``dfkd.adversarial`` weighs
    ``L_KD``; 1 is the paper's). ``L_BN`` matches the
    synthetic batch's statistics to every teacher BatchNorm layer's running statistics;
    ``−L_KD`` makes the generator seek images on which the student still disagrees with the
    teacher. No one-hot, entropy or activation prior. Adam, lr 1e-3, betas (0.5, 0.999).

(c) **Student objective** (Eq. 11): ``min_S L_KD + β·L_MHAD + γ·L_SFCL``, β = 10, γ = 8:
    KL to the teacher's predictions, mixed high-order attention distillation at every stage
    (:mod:`finegrain.losses.mhad`), and the teacher–student contrast of penultimate features
    (:mod:`finegrain.losses.sfcl`). SGD momentum 0.9, lr 0.01, cosine, weight decay 5e-4
    (the ``optim``/``schedule`` sections).

Ablation switches (paper Tables 3–5): ``dfkd.mhad``, ``dfkd.sfcl``, ``generator.attention_lambda=0``,
``mhad.order``, ``mhad.form``. The MHA modules, adapters and SFCL heads train with the student
and are not part of the deployed classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from finegrain.datafree.bn_hooks import BNStatsHooks
from finegrain.datafree.distiller import DataFreeDistiller
from finegrain.datafree.synthesizer import target_prior_weight
from finegrain.losses.bn_stats import BNStatsLoss
from finegrain.losses.mhad import MHADLoss, pair_stages
from finegrain.losses.sfcl import SemanticContrastLoss
from finegrain.methods import register_method


@register_method("dfkd-fgvc", "data-free KD for FGVC: attention generator + BN statistics, MHAD + SFCL student losses",
                 "Shao et al., ICCV 2023, arXiv 2404.12037")
class DFKDFGVC(DataFreeDistiller):
    config_sections = ("distill", "generator", "dfkd", "mhad", "sfcl")

    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names, **context)
        self.bn_hooks = BNStatsHooks(self.teacher)
        self.bn_loss = BNStatsLoss()
        self.target_ce = target_prior_weight(cfg.generator)
        dfkd = cfg.dfkd
        self.mhad = self._build_mhad(cfg.mhad) if dfkd.mhad else None
        self.sfcl = self._build_sfcl(cfg.sfcl) if dfkd.sfcl else None

    def _build_mhad(self, m) -> MHADLoss:
        self.teacher_stages, self.student_stages = pair_stages(self.teacher.net, self.student, m.min_reduction)
        return MHADLoss([self.teacher.net.stage_channels[i] for i in self.teacher_stages],
                        [self.student.stage_channels[i] for i in self.student_stages],
                        order=m.order, reduction=m.reduction, form=m.form, normalize=m.normalize,
                        loss_reduction=m.loss_reduction, seed=m.seed)

    def _build_sfcl(self, s) -> SemanticContrastLoss:
        return SemanticContrastLoss(self.teacher.feature_dim, self.student.feature_dim, out_dim=s.dim,
                                    hidden_dim=s.hidden_dim, temperature=s.temperature, anchors=s.anchors)

    # (b) generator objective, Eq. 10: α·L_BN − L_KD
    def synthesis_objective(self, images: torch.Tensor) -> dict:
        with self.bn_hooks.collect() as stats:
            teacher_logits = self.teacher(images)
        bn = self.bn_loss(stats)
        dfkd = self.cfg.dfkd
        loss, logs = dfkd.alpha * bn, {"bn": bn.detach()}
        kd = self.kd_loss(self.student(images), teacher_logits)  # logged at weight 0 too: the student–teacher gap
        loss, logs["kd"] = loss - dfkd.adversarial * kd, kd.detach()
        if self.target_ce:  # a practical prior (finegrain): off in the paper's objective
            target_ce = F.cross_entropy(teacher_logits, self.synthesizer.targets)
            loss, logs["target_ce"] = loss + self.target_ce * target_ce, target_ce.detach()
        return {"loss": loss, **logs}

    # (c) student objective, Eq. 11: L_KD + β·L_MHAD + γ·L_SFCL
    def student_objective(self, images: torch.Tensor) -> dict:
        stages = self.mhad is not None
        with torch.no_grad():
            teacher = self.teacher.forward_taps(images, stages=stages)
        student = self.student.forward_taps(images, stages=stages)
        kd = self.kd_loss(student.logits, teacher.logits)
        loss, logs = kd, {"kd": kd.detach()}
        if self.mhad is not None:
            mhad = self.mhad([teacher.stages[i] for i in self.teacher_stages],
                             [student.stages[i] for i in self.student_stages])
            loss = loss + self.cfg.dfkd.beta * mhad
            logs["mhad"] = mhad.detach()
        if self.sfcl is not None:
            sfcl = self.sfcl(teacher.pooled, student.pooled)
            loss = loss + self.cfg.dfkd.gamma * sfcl
            logs["sfcl"] = sfcl.detach()
        return {"loss": loss, **logs}

    def student_extra_parameters(self):
        modules = [m for m in (self.mhad, self.sfcl) if m is not None]
        return [p for m in modules for p in m.parameters()]
