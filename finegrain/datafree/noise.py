"""Gaussian noise as "synthetic data": the floor every data-free synthesizer has to beat.

DFAD (Fang et al., arXiv 1912.11006, Table 2) reports "KD on random noise": the student is
distilled from the teacher's answers on pure noise, with nothing learnt about the inputs. A
synthesizer that does no better than that has not found anything in the teacher.

:class:`NoiseSynthesizer` hands out ``N(0, 1)`` noise directly in the teacher's *normalized*
input space (what a normalized real image is close to per channel on average, but with no
structure). It has no parameters and nothing to optimize: :meth:`NoiseSynthesizer.make_optimizer`
returns ``None`` (torch optimizers refuse an empty parameter list), and the ``noise-kd`` method
runs no synthesizer phase at all. Fresh noise costs nothing, so it never keeps a pool.
"""

from __future__ import annotations

import torch

from finegrain.datafree.synthesizer import Objective, Synthesizer


class NoiseSynthesizer(Synthesizer):
    """``sample(n)``: an ``n × C × size × size`` batch of N(0, 1) values, C = len(mean)."""

    def __init__(self, image_size: int, mean, std, batch_size: int):
        super().__init__(mean, std, batch_size)
        self.image_size = int(image_size)
        self.channels = len(list(mean))

    def make_optimizer(self):
        """Nothing to optimize: ``None`` (a method using this synthesizer has no synthesizer phase)."""
        return None

    def attach_pool(self, capacity: int) -> None:
        """Ignored: fresh noise is free, and a pool is only ever filled by synthesis steps."""

    def synthesize(self, objective: Objective) -> dict:
        """The objective on a fresh noise batch (nothing here learns from it)."""
        with torch.no_grad():
            return objective(self.sample(self.batch_size))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        self.images_made += n
        return torch.randn(n, self.channels, self.image_size, self.image_size, device=self.device)
