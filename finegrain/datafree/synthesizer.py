"""What makes the images a data-free student learns from.

A synthesizer owns the thing that makes images (a generator, or a batch of pixels) and that
thing's optimizer. The method gives it an *objective* — a function of a synthetic batch
returning ``{"loss": ..., ...}`` — and :meth:`Synthesizer.synthesize` runs one forward pass for
the loop to backpropagate and step. :meth:`Synthesizer.sample` hands the student a fresh batch,
without gradients and without changing the synthesizer.

Images leave a synthesizer normalized exactly as the teacher's real inputs were: the generator's
``tanh`` output is mapped to [0, 1], then ``(x − mean)/std`` with the teacher's mean and std.

A synthesizer may keep an :class:`~finegrain.datafree.pool.ImagePool` (finegrain's practical
setting for generators, ``distill.pool_size``; DeepInversion and CMI always have one): every
batch a synthesis step makes joins the pool at no extra cost, and student batches are random
draws from it seen through :meth:`Synthesizer.views` (random flips, optionally cutmix), so each
synthesized image teaches the student several times — the CMI / Fast-DFKD habit.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from finegrain.datafree.frozen import preserved_buffers
from finegrain.datafree.pool import ImagePool
from finegrain.engine.optim import build_scheduler
from finegrain.errors import ConfigError
from finegrain.method_config import GeneratorConfig
from finegrain.models.generator import AttentionGenerator
from finegrain.models.upsample_generator import UpsampleGenerator

Objective = Callable[[torch.Tensor], dict]


def build_generator(gen_cfg: GeneratorConfig, image_size: int) -> nn.Module:
    """The ``generator`` section's network: the attention generator, or DAFL/DFAD's upsample one.

    A section the network cannot be built from (too few ``channels``, say) is a config error, so
    the command line reports it in one line instead of a traceback."""
    try:
        return _generator_for(gen_cfg, image_size)
    except ValueError as err:
        raise ConfigError(f"generator section: {err}") from None


def _generator_for(gen_cfg: GeneratorConfig, image_size: int) -> nn.Module:
    if gen_cfg.architecture == "upsample":
        return UpsampleGenerator(image_size, gen_cfg.noise_dim, gen_cfg.channels, slope=gen_cfg.leaky_slope,
                                 output_norm=gen_cfg.output_norm, grayscale=gen_cfg.grayscale,
                                 attention_lambda=gen_cfg.attention_lambda, sam_ratio=gen_cfg.sam_ratio,
                                 softmax_axis=gen_cfg.softmax_axis)
    return AttentionGenerator(image_size, gen_cfg.noise_dim, gen_cfg.channels,
                              attention_lambda=gen_cfg.attention_lambda, slope=gen_cfg.leaky_slope,
                              sam_ratio=gen_cfg.sam_ratio, softmax_axis=gen_cfg.softmax_axis,
                              output_norm=gen_cfg.output_norm, grayscale=gen_cfg.grayscale,
                              upsampling=gen_cfg.upsampling)


def plain_generator_synthesizer(cfg, cls=None, num_classes: int = 0, **extra) -> "GeneratorSynthesizer":
    """The baselines' synthesizer (DFAD, ZSKT, DAFL, DFQ, CMI, MAD): a ``cls`` (default
    :class:`GeneratorSynthesizer`) around the ``generator`` section's DCGAN with spatial attention
    off (λ = 0, whatever ``generator.attention_lambda`` says: SAM is DFKD-FGVC's contribution);
    ``extra`` goes to ``cls``. Every practical setting of the section (class-conditional synthesis
    and its target prior, output normalization, resize up-blocks) is the baselines' as much as
    DFKD-FGVC's, so one recipe, such as ``datafree_practical``, runs every method on equal terms."""
    d = cfg.data
    plain = dataclasses.replace(cfg.generator, attention_lambda=0.0)
    return (cls or GeneratorSynthesizer)(build_generator(plain, d.image_size), plain, d.mean, d.std, d.batch_size,
                                         num_classes=num_classes, **extra)


def target_prior_weight(gen_cfg: GeneratorConfig) -> float:
    """``generator.target_ce``, checked: the target prior ``CE(T(x̂), y)`` needs the targets ``y`` that
    a class-conditional generator draws with its noise.

    Why a prior at all: an unconditional generator trained against a fine-grained teacher tends to
    make images of a few classes; drawing a target per image and asking the teacher to see it
    spreads the synthetic set over every class (the CMI / Fast-DFKD habit of targeted synthesis)."""
    if gen_cfg.target_ce and not gen_cfg.class_conditional:
        raise ConfigError("generator.target_ce needs generator.class_conditional=true (the targets come from the "
                          "generator's input)")
    return gen_cfg.target_ce


def batch_mixer(mix: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``cutmix`` of a batch with itself rolled by one (torchvision's, Beta(1, 1)), or None for ``none``.

    Why: a pool holds a few hundred synthetic images and the student sees each several times.
    Mixed pairs are inputs the pool does not hold, and the teacher labels each one afresh, so
    the student matches the teacher's function on more of the input space instead of fitting its
    answers on the pool (Beyer et al., "Knowledge distillation: a good teacher is patient and
    consistent", CVPR 2022). The labels torchvision mixes are unused: the teacher labels the result.
    """
    if mix == "none":
        return None
    if mix != "cutmix":
        raise ValueError(f"distill.pool_mix must be none or cutmix, got {mix!r}")
    from torchvision.transforms import v2

    mixer = v2.CutMix(alpha=1.0, num_classes=2)

    def mixed(images: torch.Tensor) -> torch.Tensor:
        unused_labels = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        return mixer(images, unused_labels)[0]
    return mixed


class Normalizer(nn.Module):
    """Between [0, 1] pixels and the teacher's normalized inputs."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return (unit - self.mean) / self.std

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        return (images * self.std + self.mean).clamp(0, 1)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized values of pixel 0 and pixel 1, per channel."""
        return self(torch.zeros_like(self.mean)), self(torch.ones_like(self.mean))


class Synthesizer(nn.Module):
    """Base: ``synthesize(objective)`` (one optimization step's losses) and ``sample(n)``."""

    def __init__(self, mean, std, batch_size: int):
        super().__init__()
        self.normalizer = Normalizer(mean, std)
        self.batch_size = batch_size
        #: fresh synthetic images made so far in this process (for images/s figures)
        self.images_made = 0
        #: the pool student batches are drawn from, or None for a fresh batch at every student step
        self.pool: ImagePool | None = None
        self.view_flip = True
        self.view_mix = None

    def attach_pool(self, capacity: int) -> None:
        """Keep the last ``capacity`` synthesized images; student batches are drawn from them."""
        self.pool = ImagePool(capacity)

    def configure_views(self, flip: bool, mix: str = "none") -> None:
        """Pool draws are mirrored at random if ``flip``, then mixed in pairs if ``mix`` is ``cutmix``."""
        self.view_flip = self.view_flip and bool(flip)
        self.view_mix = batch_mixer(mix)

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """Random mirror and mix of each normalized image: a pooled image looks new."""
        if self.view_flip:
            mirrored = torch.rand(images.shape[0], device=images.device) < 0.5
            images = torch.where(mirrored[:, None, None, None], images.flip(3), images)
        return images if self.view_mix is None else self.view_mix(images)

    def draw_from_pool(self, n: int) -> torch.Tensor:
        return self.views(self.normalizer(self.pool.sample(n)))

    def make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def make_scheduler(self, optimizer, total_iterations: int, iterations_per_epoch: int):
        return None

    def synthesize(self, objective: Objective) -> dict:
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each synthesizer optimizer step (clamp pixels, fill a pool ...)."""

    def rank_local(self) -> list[str]:
        """Names of parameters/buffers that differ between processes and DDP must not synchronise."""
        return []

    @property
    def device(self) -> torch.device:
        return self.normalizer.mean.device


class GeneratorSynthesizer(Synthesizer):
    """A generator ``G(z)``, trained by Adam on the method's objective, sampled with fresh noise."""

    def __init__(self, generator: nn.Module, gen_cfg: GeneratorConfig, mean, std, batch_size: int,
                 num_classes: int = 0):
        super().__init__(mean, std, batch_size)
        self.generator = generator
        self.cfg = gen_cfg
        #: the generator emits images in the teacher's normalized space (``output_norm="standardize"``),
        #: not in [-1, 1]; copies of it (MAD's EMA generator) emit in the same space
        self.emits_normalized = bool(getattr(generator, "emits_normalized", False))
        #: target class of each image of the newest batch (class-conditional synthesis), else None
        self.targets: torch.Tensor | None = None
        self.class_embedding = None
        if gen_cfg.class_conditional:
            if num_classes < 1:
                raise ValueError("generator.class_conditional needs the number of classes")
            self.num_classes = num_classes
            self.class_embedding = nn.Embedding(num_classes, generator.noise_dim)
            nn.init.normal_(self.class_embedding.weight)

    def rank_local(self) -> list[str]:
        return ["pool.images"] if self.pool is not None else []

    @classmethod
    def from_config(cls, gen_cfg: GeneratorConfig, image_size: int, mean, std, batch_size: int,
                    num_classes: int = 0) -> "GeneratorSynthesizer":
        return cls(build_generator(gen_cfg, image_size), gen_cfg, mean, std, batch_size, num_classes)

    def make_optimizer(self) -> torch.optim.Optimizer:
        params = list(self.generator.parameters())
        if self.class_embedding is not None:
            params += list(self.class_embedding.parameters())
        return torch.optim.Adam(params, lr=self.cfg.lr, betas=tuple(self.cfg.betas), weight_decay=self.cfg.weight_decay)

    def make_scheduler(self, optimizer, total_iterations: int, iterations_per_epoch: int):
        from finegrain.config import ScheduleConfig

        return build_scheduler(optimizer, ScheduleConfig(name=self.cfg.schedule), total_iterations, iterations_per_epoch)

    def noise(self, n: int) -> torch.Tensor:
        """Fresh z ~ N(0, I); each process draws its own (the loop seeds ranks differently).

        Class-conditional: ``z + e_y`` with target classes ``y`` drawn uniformly, kept in ``targets``."""
        z = torch.randn(n, self.generator.noise_dim, device=self.device)
        if self.class_embedding is None:
            return z
        self.targets = torch.randint(self.num_classes, (n,), device=self.device)
        return z + self.class_embedding(self.targets)

    def generate(self, z: torch.Tensor, generator: nn.Module | None = None) -> torch.Tensor:
        """Normalized images of ``generator`` (default: the one being trained; otherwise a copy of it,
        such as MAD's EMA generator, whose output is in the same space) for noise ``z``."""
        images = (self.generator if generator is None else generator)(z)
        return images if self.emits_normalized else self.normalizer((images + 1) / 2)

    def synthesize(self, objective: Objective) -> dict:
        images = self.generate(self.noise(self.batch_size))
        if self.pool is not None:  # the batch the generator learns from also feeds the student
            self.pool.add(self.normalizer.to_unit(images.detach()))
            self.images_made += images.shape[0]
        return objective(images)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Draws from the pool if there is one; else a batch as the generator now makes it
        (train-mode BatchNorm), leaving its state untouched."""
        if self.pool is not None:
            return self.draw_from_pool(n)
        with preserved_buffers(self.generator):
            images = self.generate(self.noise(n))
        self.images_made += n
        return images
