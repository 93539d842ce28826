"""Distances between a student's and a teacher's logits, the core of every distillation method.

* :class:`KLDivergence` – Hinton's soft-target loss, ``T²·KL(σ(t/T) ‖ σ(s/T))`` averaged over the
  batch. The ``T²`` factor keeps gradient magnitudes independent of the temperature (Hinton et
  al., 2015). ``direction`` picks which distribution is the reference: DFKD-FGVC's paper writes
  ``KL(σ(S) ‖ σ(T))``; Hinton and most code use the teacher as reference. Both are zero exactly
  when the two softmaxes agree.
* :class:`LogitL1` – DFAD's mean absolute logit difference: it does not saturate when the teacher
  is confident, which keeps the adversarial generator's gradient alive.
* :class:`JensenShannon` – the bounded, symmetric disagreement ADI (DeepInversion's adaptive
  term) maximizes; in [0, log 2].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DIRECTIONS = ("teacher_student", "student_teacher")


class KLDivergence(nn.Module):
    """``T² · KL(p_ref ‖ p_other)`` over softmaxes at temperature ``T``, mean over the batch."""

    def __init__(self, temperature: float = 1.0, direction: str = "teacher_student", scale_t2: bool = True):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"KL direction must be one of {DIRECTIONS}, got {direction!r}")
        self.temperature, self.direction, self.scale_t2 = temperature, direction, scale_t2

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        log_s = F.log_softmax(student_logits.float() / T, dim=1)
        log_t = F.log_softmax(teacher_logits.float() / T, dim=1)
        if self.direction == "teacher_student":   # KL(t ‖ s)
            kl = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
        else:                                      # KL(s ‖ t)
            kl = F.kl_div(log_t, log_s, reduction="batchmean", log_target=True)
        return kl * (T * T if self.scale_t2 else 1.0)


class LogitL1(nn.Module):
    """Mean absolute difference of the logits (DFAD's adversarial distance)."""

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(student_logits.float(), teacher_logits.float())


class JensenShannon(nn.Module):
    """``JS(σ(s) ‖ σ(t))`` averaged over the batch; symmetric, bounded by log 2. Computed from
    log-softmaxes so that a probability underflowing to 0 cannot produce an infinite gradient."""

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(student_logits.float(), dim=1)
        log_q = F.log_softmax(teacher_logits.float(), dim=1)
        log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
        kl_pm = (log_p.exp() * (log_p - log_m)).sum(1)
        kl_qm = (log_q.exp() * (log_q - log_m)).sum(1)
        return 0.5 * (kl_pm + kl_qm).mean()
