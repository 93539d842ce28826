"""DAFL: data-free learning of student networks (Chen et al., ICCV 2019); docs/methods.md (Baselines).

The generator is not adversarial: it is trained to make images the *teacher* treats like real
data, with three priors on the teacher's response (:mod:`finegrain.losses.datafree_priors`):

    L_G = L_oh + 0.1·L_a + 5·L_ie

``L_oh`` (confident predictions: CE against their own argmax), ``L_a`` (strong penultimate
features: −mean |v|) and ``L_ie`` (a batch covering the classes evenly: here
``log K − H(mean prediction)``, DAFL's −H plus a constant). The student then learns by KD on
``G(z)``, the framework's default student objective. The generator is the plain DCGAN of the
``generator`` section (spatial attention off, :mod:`finegrain.datafree.baseline`).
"""

from __future__ import annotations

from finegrain.datafree.baseline import GeneratorBaseline
from finegrain.methods import register_method


@register_method("dafl", "DAFL: non-adversarial generator with one-hot, activation and entropy priors; student KD",
                 "Chen et al., ICCV 2019, arXiv 1904.01186")
class DAFL(GeneratorBaseline):
    """Everything is in the weights of the ``dafl`` section: ``dafl.onehot``, ``dafl.activation``,
    ``dafl.balance`` (L_ie)."""
    config_sections = ("distill", "generator", "dafl")
    weights_section = "dafl"
