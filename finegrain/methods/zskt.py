"""ZSKT: zero-shot knowledge transfer via adversarial belief matching (Micaelli & Storkey,
NeurIPS 2019); docs/methods.md (Baselines).

An adversarial game like DFAD's, on the KL divergence instead of the L1 logit gap:

* generator: ``max_G KL`` — images on which the student's beliefs still differ from the
  teacher's (the plain DCGAN of the ``generator`` section, spatial attention off);
* student: ``min_S KL + β·L_AT`` — besides the predictions, the student matches the teacher's
  normalized spatial attention maps (:mod:`finegrain.losses.attention_transfer`) at each paired
  stage (the deepest stages of equal stride, as MHAD pairs them; maps resized to the teacher's).

ZSKT's β = 250 and p = 2 are the defaults. Budgets (``distill.generator_steps``/``student_steps``)
are the framework's, the same for every method, rather than ZSKT's own 1:10 ratio.
"""

from __future__ import annotations

import torch

from finegrain.datafree.baseline import GeneratorBaseline
from finegrain.losses.attention_transfer import AttentionTransfer
from finegrain.losses.mhad import pair_stages
from finegrain.methods import register_method


@register_method("zskt", "zero-shot KT: adversarial KL generator, student KD + attention transfer",
                 "Micaelli & Storkey, NeurIPS 2019, arXiv 1905.09768")
class ZSKT(GeneratorBaseline):
    config_sections = ("distill", "generator", "zskt")
    weights_section = "zskt"

    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names, **context)
        self.teacher_stages, self.student_stages = pair_stages(self.teacher.net, self.student, cfg.zskt.min_reduction)
        self.attention = AttentionTransfer(cfg.zskt.attention_p)

    def student_objective(self, images: torch.Tensor) -> dict:
        with torch.no_grad():
            teacher = self.teacher.forward_taps(images, stages=True)
        student = self.student.forward_taps(images, stages=True)
        kd = self.kd_loss(student.logits, teacher.logits)
        at = self.attention([student.stages[i] for i in self.student_stages],
                            [teacher.stages[i] for i in self.teacher_stages])
        return {"loss": kd + self.cfg.zskt.attention_weight * at, "kd": kd.detach(), "at": at.detach()}
