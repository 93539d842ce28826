"""Knowledge distillation with the real training data (Hinton, Vinyals & Dean, 2015); docs/methods.md (Baselines).

The upper bound of every data-free method: the same teacher and student, but the student sees
the real training images with their labels,

    loss = w_kd · T²·KL(σ(t/T) ‖ σ(s/T)) + w_ce · CE(s, y).

Images are preprocessed as the teacher's were (size, crop ratio, mean/std from its checkpoint),
and the data's classes must be the teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from finegrain.datafree.distiller import build_student, load_matching_teacher
from finegrain.datafree.teacher import apply_teacher_preprocessing
from finegrain.losses.kd import KLDivergence
from finegrain.methods import register_method
from finegrain.engine.method import Method


@register_method("kd", "Hinton knowledge distillation on real training data (the data-free upper bound)",
                 "Hinton et al., arXiv 1503.02531")
class KnowledgeDistillation(Method):
    config_sections = ("kd", "distill")
    classifier_attr = "student"
    checkpoint_exclude = ("teacher.",)

    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names)
        self.teacher = load_matching_teacher(cfg, class_names)
        self.student = build_student(cfg, self.num_classes)
        self.kl = KLDivergence(cfg.kd.temperature, "teacher_student")

    @classmethod
    def prepare_config(cls, cfg) -> None:
        apply_teacher_preprocessing(cfg)

    def configure_phases(self, total_iterations, iterations_per_epoch):
        return [self.classifier_phase("student", self.student, total_iterations, iterations_per_epoch)]

    def step(self, phase, batch):
        images, labels = batch
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        logits = self.student(images)
        kd = self.kl(logits, teacher_logits)
        ce = F.cross_entropy(logits, labels, label_smoothing=self.cfg.train.label_smoothing)
        loss = self.cfg.kd.kd_weight * kd + self.cfg.kd.ce_weight * ce
        return {"loss": loss, "kd": kd.detach(), "ce": ce.detach()}
