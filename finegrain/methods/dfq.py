"""DFQ: data-free network quantization with adversarial knowledge distillation (Choi et al.,
CVPR-W 2020); docs/methods.md (Baselines).

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

from finegrain.datafree.baseline import GeneratorBaseline
from finegrain.methods import register_method


@register_method("dfq", "DFQ: adversarial KL generator with BN-statistics, one-hot and class-balance priors; student KD",
                 "Choi et al., CVPR-W 2020, arXiv 2005.04136")
class DFQ(GeneratorBaseline):
    """Everything is in the weights of the ``dfq`` section: ``dfq.adversarial``, ``dfq.bn``,
    ``dfq.onehot``, ``dfq.balance``."""
    config_sections = ("distill", "generator", "dfq")
    weights_section = "dfq"
