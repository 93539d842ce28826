"""CSDNet's SSDT: self-distillation between the predictions on the raw and the augmented view.

The raw view is the one the deployed model sees, so by default its (detached) softened
prediction teaches the augmented view: the network learns to find the same subcategory evidence
when SSDP has hidden or enlarged parts of the image, without a separate teacher network.
finegrain's reading (METHODS.md §1, spec): ``T²·KL(σ(h(x)/T) ‖ σ(h(x̃)/T))`` with T = 4; the
direction and a symmetric form are options.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DIRECTIONS = ("raw_to_aug", "aug_to_raw")


def distill_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T²·KL(σ(t/T) ‖ σ(s/T))`` averaged over the batch; the teacher side carries no gradient."""
    teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * temperature**2


class SelfDistillationLoss(nn.Module):
    def __init__(self, temperature: float = 4.0, direction: str = "raw_to_aug", symmetric: bool = False):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.temperature, self.direction, self.symmetric = temperature, direction, symmetric

    def forward(self, raw_logits: torch.Tensor, aug_logits: torch.Tensor) -> torch.Tensor:
        raw_teaches = distill_kl(raw_logits, aug_logits, self.temperature)
        if self.symmetric:
            return 0.5 * (raw_teaches + distill_kl(aug_logits, raw_logits, self.temperature))
        if self.direction == "aug_to_raw":
            return distill_kl(aug_logits, raw_logits, self.temperature)
        return raw_teaches
