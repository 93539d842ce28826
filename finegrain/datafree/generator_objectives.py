"""The generator objectives of the generator-based baselines, as one weighted sum.

ZSKT, DAFL, DFQ, CMI and MAD train their generators on different mixtures of the same few
terms, each measured on the teacher's (and, for the adversarial term, the student's) response
to a synthetic batch:

    L_G = w_adv·(−D(S(x̂), T(x̂))) + w_bn·L_BN + w_oh·L_oh + w_act·L_act + w_bal·L_bal + w_y·CE(T(x̂), y)

* adversarial: the generator seeks images on which the student still disagrees with the
  teacher; ``D`` is the distiller's KL (``distill.temperature``, ``distill.kl_direction``);
* ``L_BN``: teacher BatchNorm statistics of the batch vs the real data's running ones;
* ``L_oh``, ``L_act``, ``L_bal``: :mod:`finegrain.losses.datafree_priors`;
* ``CE(T(x̂), y)``: the target prior of a class-conditional generator (``generator.target_ce``),
  ``y`` the classes it drew with its noise; no baseline's paper has it, each may use it.

A method is then its weights (DAFL: oh 1, act 0.1, bal 5 and no adversary; DFQ: adv, bn, oh and
bal; ZSKT and MAD: adv alone), which is the DataFree toolkit's habit too. Terms whose weight is
zero are not computed.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from finegrain.datafree.bn_hooks import BNStatsHooks
from finegrain.losses.bn_stats import BNStatsLoss
from finegrain.losses.datafree_priors import ActivationLoss, ClassBalanceLoss, OneHotLoss
from finegrain.method_config import WEIGHT_DOCS


@dataclasses.dataclass
class SynthesisWeights:
    adversarial: float = 0.0
    bn: float = 0.0
    onehot: float = 0.0
    activation: float = 0.0
    balance: float = 0.0
    target: float = 0.0


def weights_from_section(section) -> SynthesisWeights:
    """The synthesis weights a config section holds (see :func:`finegrain.method_config.weights_config`)."""
    return SynthesisWeights(**{key: getattr(section, key) for key in WEIGHT_DOCS if hasattr(section, key)})


class InversionObjective(nn.Module):
    """``forward(images, teacher, student, targets) -> (losses, teacher taps)``; ``losses["loss"]`` is L_G."""

    def __init__(self, teacher: nn.Module, kd_loss: nn.Module, weights: SynthesisWeights):
        super().__init__()
        self.weights = weights
        self.kd_loss = kd_loss
        # Hooks only where the BN term is used: the others pay nothing for them.
        self.bn_hooks = BNStatsHooks(teacher) if weights.bn else None
        self.bn_loss, self.onehot = BNStatsLoss(), OneHotLoss()
        self.activation, self.balance = ActivationLoss(), ClassBalanceLoss()

    def forward(self, images: torch.Tensor, teacher: nn.Module, student: nn.Module,
                targets: torch.Tensor | None = None):
        w = self.weights
        if self.bn_hooks is not None:
            with self.bn_hooks.collect() as stats:
                taps = teacher.forward_taps(images)
        else:
            taps, stats = teacher.forward_taps(images), None
        terms = {}
        if w.adversarial:
            terms["adversarial"] = (w.adversarial, -self.kd_loss(student(images), taps.logits))
        if w.bn:
            terms["bn"] = (w.bn, self.bn_loss(stats))
        if w.onehot:
            terms["onehot"] = (w.onehot, self.onehot(taps.logits))
        if w.activation:
            terms["activation"] = (w.activation, self.activation(taps.pooled))
        if w.balance:
            terms["balance"] = (w.balance, self.balance(taps.logits))
        if w.target:
            if targets is None:
                raise ValueError("the target prior needs the batch's target classes (a class-conditional generator)")
            terms["target_ce"] = (w.target, F.cross_entropy(taps.logits, targets))
        if not terms:
            raise ValueError("a generator objective needs at least one term with a non-zero weight")
        loss = sum(weight * value for weight, value in terms.values())
        return {"loss": loss, **{name: value.detach() for name, (_, value) in terms.items()}}, taps

