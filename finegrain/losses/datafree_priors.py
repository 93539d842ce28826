"""What a generator is asked to make the *teacher* say, with no real image to compare against.

These priors stand in for the missing data in DAFL (Chen et al., ICCV 2019) and DFQ (Choi et al.,
CVPR-W 2020), and in CMI after it:

* :class:`OneHotLoss` – cross-entropy of the teacher's logits against their own argmax: real
  images make a trained classifier confident, so synthetic ones should too.
* :class:`ActivationLoss` – ``−mean |v|`` of the teacher's pooled features: real images fire the
  penultimate features strongly (DAFL's activation term).
* :class:`ClassBalanceLoss` – ``KL(p̄ ‖ uniform) = log K − H(p̄)`` of the batch-mean teacher
  prediction ``p̄``: a batch should cover every class evenly. This is DAFL's information-entropy
  term ``−H(p̄)`` and DFQ's class-balance term; finegrain's reading adds the constant ``log K``
  (the gradient is unchanged) so that the term is exactly zero for a perfectly balanced batch.

Each term is zero (or at its minimum) in its degenerate case: saturated one-hot logits, zero
features (the activation term's *upper* end; it rewards moving away from it), a uniform
batch-mean prediction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class OneHotLoss(nn.Module):
    """CE(teacher logits, argmax of the same logits): low when every prediction is confident."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, logits.detach().argmax(dim=1))


class ActivationLoss(nn.Module):
    """``−mean |v|``: decreases as the teacher's pooled features grow; zero for zero features."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return -features.abs().mean()


class ClassBalanceLoss(nn.Module):
    """``log K − H(mean softmax)``: zero when the batch's average prediction is uniform over K classes."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        mean_prob = F.softmax(logits, dim=1).mean(dim=0)
        entropy = -(mean_prob * torch.log(mean_prob.clamp_min(1e-12))).sum()
        return math.log(logits.shape[1]) - entropy
