"""The generator of DAFL (Chen et al., ICCV 2019) and DFAD (Fang et al., 2019): upsample-then-conv
blocks with BatchNorm, the architecture behind those papers' MNIST and CIFAR figures.

    FC(z) → reshape C₀ × s/4 × s/4 → BN
    2 × [nearest ×2 upsample → 3×3 conv → BN (eps 0.8) → LeakyReLU]   widths C₀, C₁
    3×3 conv C₁→3 → tanh → affine-free BN  (``output_norm="standardize"``)

Why finegrain has it besides DFKD-FGVC's attention generator (:mod:`finegrain.models.generator`):
the baselines' published numbers come from this network, and on a small grey teacher it is the
better synthesizer. Nearest upsampling then a conv paints no checkerboard (a stride-2 3×3
transposed conv, the attention generator's up-block, covers alternate pixels with different
kernel taps, and synthetic digits come out as a grid of dots); BatchNorm in every block keeps the
activations at unit scale where spectral norm shrinks them block after block.

finegrain's reading (spec): the BN eps of 0.8 inside the blocks is the published code's (a large
eps that damps the normalization of low-variance channels); widths come from the first two
entries of ``generator.channels``; with ``attention_lambda`` ≠ 0 every block ends in DFKD-FGVC's
spatial attention module (``F + λ·softmax(A)⊙F``, as in the attention generator), so DFKD-FGVC
keeps its attention on these blocks (the baselines build it with λ = 0: the published network); for sizes that are not multiples of 4 the map is centre-cropped
to the size asked for. ``output_norm`` and ``grayscale`` mean what they mean for the attention
generator (:func:`finegrain.models.generator.output_layers`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from finegrain.models.generator import SpatialAttention, finish_image, output_layers

BLOCK_BN_EPS = 0.8  # DAFL's / DFAD's code


class UpsampleBlock(nn.Module):
    """Nearest ×2 → 3×3 conv → BN → LeakyReLU, then DFKD-FGVC's SAM when ``attention_lambda`` ≠ 0."""

    def __init__(self, cin: int, cout: int, *, slope: float, attention_lambda: float, sam_ratio: int,
                 softmax_axis: str):
        super().__init__()
        self.body = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1),
                                  nn.BatchNorm2d(cout, eps=BLOCK_BN_EPS), nn.LeakyReLU(slope, inplace=True))
        self.attention_lambda = float(attention_lambda)
        self.sam = SpatialAttention(cout, sam_ratio, softmax_axis) if self.attention_lambda else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        return x if self.sam is None else self.sam(x, self.attention_lambda)


class UpsampleGenerator(nn.Module):
    """``G(z)``: images in [-1, 1], or standardized with ``output_norm="standardize"`` (DAFL, DFAD)."""

    def __init__(self, image_size: int, noise_dim: int = 256, channels=(128, 64), *, slope: float = 0.2,
                 output_norm: str = "standardize", grayscale: bool = False, attention_lambda: float = 0.0,
                 sam_ratio: int = 4, softmax_axis: str = "spatial"):
        super().__init__()
        channels = list(channels)
        if len(channels) < 2:
            raise ValueError(f"generator channels: the upsample generator needs 2 widths, got {channels}")
        wide, narrow = int(channels[0]), int(channels[1])
        self.image_size, self.noise_dim = image_size, noise_dim
        self.init_size = math.ceil(image_size / 4)
        self.fc = nn.Linear(noise_dim, wide * self.init_size ** 2)
        self.bn = nn.BatchNorm2d(wide)
        block = dict(slope=slope, attention_lambda=attention_lambda, sam_ratio=sam_ratio, softmax_axis=softmax_axis)
        self.blocks = nn.Sequential(UpsampleBlock(wide, wide, **block), UpsampleBlock(wide, narrow, **block))
        self.grayscale = bool(grayscale)
        self.to_rgb, self.output_norm = output_layers(narrow, output_norm, self.grayscale)
        #: True when ``forward`` returns images in the teacher's normalized space, not in [-1, 1]
        self.emits_normalized = output_norm == "standardize"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.fc(z).view(z.shape[0], -1, self.init_size, self.init_size))
        return finish_image(self.to_rgb(self.blocks(x)), self.output_norm, standardized=self.emits_normalized,
                            grayscale=self.grayscale, image_size=self.image_size)
