"""MAD: momentum adversarial distillation (Do et al., NeurIPS 2022); docs/methods.md (Baselines).

Adversarial distillation (the generator maximizes the student–teacher KL, the student minimizes
it) suffers from the generator's distribution drifting away quickly: the student forgets what
it learnt on earlier synthetic images. MAD keeps an exponential-moving-average copy ``G_ema``
of the generator (timm's ``ModelEmaV3``, the average the student's ``distill.student_ema`` keeps
too), updated after every generator step,

    θ_ema ← m·θ_ema + (1 − m)·θ,

and the student learns by KD on samples of both ``G`` and ``G_ema``. finegrain's reading (spec,
configurable): momentum m = 0.9 per generator step, and each student batch drawn half from
``G_ema``. The generator is the plain DCGAN of the ``generator`` section (spatial attention off,
:mod:`finegrain.datafree.baseline`).
"""

from __future__ import annotations

import torch
from timm.utils import ModelEmaV3
from torch import nn

from finegrain.datafree.baseline import GeneratorBaseline
from finegrain.datafree.frozen import preserved_buffers
from finegrain.datafree.synthesizer import GeneratorSynthesizer, plain_generator_synthesizer
from finegrain.methods import register_method


def moving_average(generator: nn.Module, momentum: float) -> ModelEmaV3:
    """``G_ema``: a copy of ``generator`` that timm averages towards it on ``update`` (buffers too:
    BatchNorm statistics are averaged, integer counters copied). Because it moves slowly, its
    samples still resemble what the generator produced many steps ago. timm's copy starts in eval
    mode; MAD samples it as the generator itself runs, so it takes the generator's mode (the loop's
    ``train()`` then sets both every epoch). It never receives gradients."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"mad.momentum must be in [0, 1], got {momentum}")
    ema = ModelEmaV3(generator, decay=momentum)
    ema.module.train(generator.training)
    ema.module.requires_grad_(False)
    return ema


class MomentumSynthesizer(GeneratorSynthesizer):
    """A generator and its moving average; student batches mix samples of both."""

    def __init__(self, generator, gen_cfg, mean, std, batch_size, num_classes: int = 0, *, momentum: float, ema_fraction: float):
        super().__init__(generator, gen_cfg, mean, std, batch_size, num_classes)
        if not 0.0 <= ema_fraction < 1.0:
            raise ValueError(f"mad.ema_fraction must be in [0, 1), got {ema_fraction}")
        self.ema = moving_average(generator, momentum)
        self.ema_fraction = ema_fraction

    def after_step(self) -> None:
        self.ema.update(self.generator)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        past = int(round(n * self.ema_fraction))
        live = super().sample(n - past)
        if past == 0:
            return live
        with preserved_buffers(self.ema.module):
            remembered = self.generate(self.noise(past), self.ema)
        self.images_made += past
        return torch.cat([live, remembered])


@register_method("mad", "MAD: adversarial KL generator plus its EMA copy; student KD on samples of both",
                 "Do et al., NeurIPS 2022, arXiv 2209.10359")
class MAD(GeneratorBaseline):
    config_sections = ("distill", "generator", "mad")
    weights_section = "mad"

    def build_synthesizer(self) -> MomentumSynthesizer:
        m = self.cfg.mad
        return plain_generator_synthesizer(self.cfg, MomentumSynthesizer, self.num_classes, momentum=m.momentum,
                                           ema_fraction=m.ema_fraction)
