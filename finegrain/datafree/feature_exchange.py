"""Channel-wise feature exchange (CFE, SpaceshipNet: Yu et al., CVPR 2023; docs/methods.md, SpaceshipNet).

A generator trained against a teacher tends to make images of few modes, and every new mode costs
synthesis steps. CFE makes new images from old ones at the cost of a forward pass: in an
intermediate feature map of the generator, each sample keeps a random half of its channels and
takes the other half from a partner sample of the same batch (sample ``n−1−i`` for sample ``i``,
the authors' pairing); the rest of the generator decodes the mixture. Different channels of a
generator's map carry different aspects of an image, so the decoded images combine a pair's
content in ways the generator does not produce on its own. The teacher labels each exchanged image
afresh: the student learns the teacher's answer on it.

Per student batch, with probability ``p`` (the authors' code: 0.7) the batch is an exchanged one,
made at a map drawn uniformly from the allowed ones (the code: each of its generator's three maps);
otherwise it is the synthesizer's usual batch (a pool draw, or a fresh one).

finegrain's reading: the exchange happens in a fresh batch of the current generator (fresh noise,
and targets when the generator is class-conditional), through a forward hook on the map's module
(:func:`finegrain.models.generator.feature_layers`). The authors instead keep every synthesized
batch's maps in growing pools and decode exchanged ones with the current generator's later layers:
their generator is re-optimized for a few hundred steps per batch, so a stored map is the only way
back to an earlier batch. Here the generator is trained continually on fresh noise, so a fresh
batch costs one forward pass and is at least as good as a stored one, and no pool of maps (tens of
times the size of the image pool) is kept.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from finegrain.datafree.frozen import preserved_buffers
from finegrain.datafree.synthesizer import GeneratorSynthesizer
from finegrain.models.generator import feature_layers


def reversed_partners(n: int, device=None) -> torch.Tensor:
    """Sample ``i``'s partner is ``n−1−i`` (an odd batch's middle sample is its own partner)."""
    return torch.arange(n - 1, -1, -1, device=device)


def exchange_channels(features: torch.Tensor, partners: torch.Tensor | None = None) -> torch.Tensor:
    """``B×C×…`` maps where each sample takes a random ``⌊C/2⌋`` of its channels (drawn per sample)
    from its partner and keeps the others; default partners :func:`reversed_partners`. A sample
    that is its own partner is unchanged."""
    n, channels = features.shape[:2]
    if partners is None:
        partners = reversed_partners(n, features.device)
    ranks = torch.rand(n, channels, device=features.device).argsort(dim=1).argsort(dim=1)
    taken = (ranks < channels // 2).view(n, channels, *[1] * (features.dim() - 2))
    return torch.where(taken, features[partners], features)


@contextmanager
def exchanging_at(layer: nn.Module):
    """While open, ``layer``'s output is replaced by its channel-exchanged version."""
    handle = layer.register_forward_hook(lambda module, inputs, output: exchange_channels(output))
    try:
        yield
    finally:
        handle.remove()


class FeatureExchangeSynthesizer(GeneratorSynthesizer):
    """A generator synthesizer whose student batches are, with probability ``exchange_prob``, fresh
    batches exchanged at one of the feature maps ``maps`` (indices into
    :func:`~finegrain.models.generator.feature_layers`: 0 = the FC map, i = after up-block i; empty =
    every map). Synthesis (the generator's own training) never exchanges."""

    def __init__(self, generator, gen_cfg, mean, std, batch_size, num_classes: int = 0, *, exchange_prob: float,
                 maps: list[int] = ()):
        super().__init__(generator, gen_cfg, mean, std, batch_size, num_classes)
        layers = feature_layers(generator)
        chosen = list(maps) or list(range(len(layers)))
        bad = [m for m in chosen if not 0 <= int(m) < len(layers)]
        if bad:
            raise ValueError(f"spaceshipnet.exchange_maps: {bad} is not among this generator's feature maps "
                             f"0..{len(layers) - 1} (0 = the FC map, i = after up-block i)")
        if not 0.0 <= exchange_prob <= 1.0:
            raise ValueError(f"spaceshipnet.exchange_prob must be in [0, 1], got {exchange_prob}")
        self.exchange_prob = float(exchange_prob)
        self.exchange_maps = [int(m) for m in chosen]
        #: student batches that were exchanged, in this process (a check that CFE is at work)
        self.exchanged_batches = 0

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        if self.exchange_prob and float(torch.rand(())) < self.exchange_prob:
            return self.exchanged(n)
        return super().sample(n)

    @torch.no_grad()
    def exchanged(self, n: int, map_index: int | None = None) -> torch.Tensor:
        """A fresh batch of ``n`` with channels exchanged at ``map_index`` (default: drawn from the
        allowed maps), the generator's state left untouched (train-mode BatchNorm, as ``sample``)."""
        if map_index is None:
            map_index = self.exchange_maps[int(torch.randint(len(self.exchange_maps), ()))]
        layer = feature_layers(self.generator)[map_index]
        with exchanging_at(layer), preserved_buffers(self.generator):
            images = self.generate(self.noise(n))
        self.images_made += n
        self.exchanged_batches += 1
        return images
