"""DFQ: data-free network quantization with adversarial knowledge distillation (Choi et al.,
CVPR-W 2020); METHODS.md §3.

The generator plays DFAD's adversarial game on the KL divergence, constrained to images the
teacher finds plausible:

    L_G = w_adv·(−KL(S, T)) + w_bn·L_BN + w_oh·L_oh + w_bal·L_bal

BatchNorm statistics of the batch match the teacher's running ones, predictions are confident
(one-hot) and the batch covers the classes evenly (class balance,
:mod:`finegrain.losses.datafree_priors`). The student learns by KD on ``G(z)``. Weights
(spec, finegrain's reading of the DataFree toolkit's DFQ setting): 1, 1, 1, 20. The generator is
the plain DCGAN of the ``generator`` section (spatial attention off, :mod:`finegrain.datafree.baseline`).
"""

from __future__ import annotations

import dataclasses

from finegrain.config import option, register_section
from finegrain.datafree.baseline import GeneratorBaseline
from finegrain.datafree.inversion import SynthesisWeights
from finegrain.methods import register_method


@register_section("dfq")
@dataclasses.dataclass
class DFQConfig:
    adversarial_weight: float = option(1.0, "weight of −KL(S, T), the adversarial term (spec: 1)")
    bn_weight: float = option(1.0, "weight of the BatchNorm-statistics loss (spec: 1)")
    onehot_weight: float = option(1.0, "weight of CE of teacher logits vs their argmax (spec: 1)")
    balance_weight: float = option(20.0, "weight of the class-balance term log K − H(mean prediction) (spec: 20)")


@register_method("dfq", "DFQ: adversarial KL generator with BN-statistics, one-hot and class-balance priors; student KD",
                 "Choi et al., CVPR-W 2020, arXiv 2005.04136")
class DFQ(GeneratorBaseline):
    def synthesis_weights(self, cfg):
        c = cfg.dfq
        return SynthesisWeights(adversarial=c.adversarial_weight, bn=c.bn_weight, onehot=c.onehot_weight,
                                balance=c.balance_weight)
