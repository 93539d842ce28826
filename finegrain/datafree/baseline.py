"""The common shape of the generator-based baselines (ZSKT, DAFL, DFQ, CMI, MAD).

Each trains a generator on an :class:`~finegrain.datafree.generator_objectives.InversionObjective` — its
own weights of the adversarial, BatchNorm-statistics, one-hot, activation and class-balance
terms, read from the config section the method names in ``weights_section`` (see
:func:`~finegrain.method_config.weights_config`) — and a student by the distiller's KD,
unless it says otherwise. A subclass overrides only what its paper changes.

The generator is the plain DCGAN of the ``generator`` section (its spatial attention off, as for
DFAD): the attention generator is DFKD-FGVC's own contribution, and the baselines of its Table 1
ran without it. ``generator.architecture=upsample`` gives them DAFL's and DFAD's own published
generator instead (:mod:`finegrain.models.upsample_generator`; the MNIST benchmark's choice).
"""

from __future__ import annotations

import dataclasses

import torch

from finegrain.datafree.distiller import DataFreeDistiller
from finegrain.datafree.generator_objectives import InversionObjective, SynthesisWeights, weights_from_section
from finegrain.datafree.synthesizer import GeneratorSynthesizer, plain_generator_synthesizer, target_prior_weight


class GeneratorBaseline(DataFreeDistiller):
    #: the config section holding this baseline's term weights; a subclass names its own (and
    #: lists it in ``config_sections``), so no section is found by matching the method's name.
    weights_section: str = ""

    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names, **context)
        self.priors = InversionObjective(self.teacher, self.kd_loss, self.synthesis_weights(cfg))

    def synthesis_weights(self, cfg) -> SynthesisWeights:
        """The method's own weights, plus the target prior of a class-conditional generator
        (``generator.target_ce``), which every generator-based method may use."""
        weights = weights_from_section(getattr(cfg, self.weights_section))
        return dataclasses.replace(weights, target=target_prior_weight(cfg.generator))

    def build_synthesizer(self) -> GeneratorSynthesizer:
        return plain_generator_synthesizer(self.cfg, num_classes=self.num_classes)

    def synthesis_objective(self, images: torch.Tensor) -> dict:
        return self.priors(images, self.teacher, self.student, self.synthesizer.targets)[0]
