"""Supervised fine-tuning with cross-entropy: the reference every other method is measured against."""

from __future__ import annotations

import torch.nn.functional as F

from finegrain.methods import register_method
from finegrain.engine.method import Method
from finegrain.models import create_classifier


@register_method("supervised", "cross-entropy fine-tuning of a timm backbone (the baseline)", "-")
class Supervised(Method):
    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names)
        self.model = create_classifier(cfg.model.name, self.num_classes, pretrained_file=cfg.model.pretrained_file,
                                       drop_rate=cfg.model.drop_rate)

    def configure_phases(self, total_iterations, iterations_per_epoch):
        return [self.classifier_phase("train", self.model, total_iterations, iterations_per_epoch)]

    def step(self, phase, batch):
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.cfg.train.label_smoothing)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "ce": loss.detach(), "train_acc": accuracy.detach()}
