"""CSDNet's SSDT: self-distillation between the predictions on the raw and the augmented view.

The raw view is the one the deployed model sees, so by default its (detached) softened
prediction teaches the augmented view: the network learns to find the same subcategory evidence
when SSDP has hidden or enlarged parts of the image, without a separate teacher network.
finegrain's reading (docs/methods.md, CSDNet: SSDT): ``T²·KL(σ(h(x)/T) ‖ σ(h(x̃)/T))`` with T = 4; the
direction and a symmetric form are options. The KL itself is the shared
:class:`~finegrain.losses.kd.KLDivergence`; this module adds which side teaches and the stop-gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from finegrain.losses.kd import KLDivergence
from finegrain.method_config import SSDT_DIRECTIONS

DIRECTIONS = SSDT_DIRECTIONS


class SelfDistillationLoss(nn.Module):
    def __init__(self, temperature: float = 4.0, direction: str = "raw_to_aug", symmetric: bool = False):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.direction, self.symmetric = direction, symmetric
        self.kl = KLDivergence(temperature, direction="teacher_student")  # KL(teacher ‖ student)

    def distill(self, teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """The teacher side carries no gradient."""
        return self.kl(student_logits, teacher_logits.detach())

    def forward(self, raw_logits: torch.Tensor, aug_logits: torch.Tensor) -> torch.Tensor:
        if self.symmetric:
            return 0.5 * (self.distill(raw_logits, aug_logits) + self.distill(aug_logits, raw_logits))
        if self.direction == "aug_to_raw":
            return self.distill(aug_logits, raw_logits)
        return self.distill(raw_logits, aug_logits)
