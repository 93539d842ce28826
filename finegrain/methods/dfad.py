"""DFAD: data-free adversarial distillation (Fang et al., 2019); docs/methods.md (Baselines).

The generator and the student play a min-max game on one distance, the mean absolute difference
of their logits: the generator makes images on which the student disagrees most with the
teacher, the student learns to agree there. No image prior, no BatchNorm statistics — this is
what DFKD-FGVC adds. DFAD's generator is the plain DCGAN: the ``generator`` section with its
spatial attention off (λ = 0) whatever ``generator.attention_lambda`` says. Same budgets and optimizers as DFKD-FGVC (``generator``,
``distill``, ``optim`` sections), so the comparison isolates the losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from finegrain.datafree.distiller import DataFreeDistiller
from finegrain.datafree.synthesizer import GeneratorSynthesizer, plain_generator_synthesizer, target_prior_weight
from finegrain.losses.kd import LogitL1
from finegrain.methods import register_method


@register_method("dfad", "data-free adversarial distillation: generator maximizes, student minimizes the L1 logit gap",
                 "Fang et al., arXiv 1912.11006")
class DFAD(DataFreeDistiller):
    config_sections = ("distill", "generator")

    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names, **context)
        self.l1 = LogitL1()
        self.target_ce = target_prior_weight(cfg.generator)  # finegrain's prior, when the generator is conditional

    def build_synthesizer(self) -> GeneratorSynthesizer:
        return plain_generator_synthesizer(self.cfg, num_classes=self.num_classes)

    def synthesis_objective(self, images: torch.Tensor) -> dict:
        teacher_logits = self.teacher(images)
        gap = self.l1(self.student(images), teacher_logits)
        out = {"loss": -gap, "l1": gap.detach()}
        if self.target_ce:
            target = F.cross_entropy(teacher_logits, self.synthesizer.targets)
            out["loss"], out["target_ce"] = out["loss"] + self.target_ce * target, target.detach()
        return out

    def student_objective(self, images: torch.Tensor) -> dict:
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        gap = self.l1(self.student(images), teacher_logits)
        return {"loss": gap, "l1": gap.detach()}
