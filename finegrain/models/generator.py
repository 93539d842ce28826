"""The attention generator of DFKD-FGVC (paper Table 6): a DCGAN whose every block carries a
spatial attention module (SAM), so synthetic images put detail where a fine-grained teacher
looks instead of spreading texture uniformly.

    FC(z) → reshape C₀ × s/16 × s/16 → BN
    4 × [3×3 ConvTranspose, stride 2 (spectral norm) → LeakyReLU → SAM]   C₀…C₄ = 512,256,128,64,64
    (``upsampling="resize"``, finegrain's option: nearest ×2 then a 3×3 conv, no checkerboard)
    3×3 conv C₄→3 → tanh

SAM is an encoder–decoder on a block's features ``F`` (C channels, ratio r): ``1×1 C→C/r``;
``3×3 C/r→2C/r, BN, ReLU, maxpool (indices kept)``; ``3×3 2C/r→4C/r, BN, ReLU``;
``3×3 deconv 4C/r→2C/r, BN, ReLU, max-unpool with the same indices``; ``3×3 deconv 2C/r→C/r,
BN, ReLU``; ``1×1 C/r→C`` → attention ``A``. Reusing the pool's indices puts the decoder's
activations back exactly where the encoder found its maxima. Output ``F + λ·softmax(A)⊙F``.

finegrain's reading (spec, configurable): LeakyReLU slope 0.2, r = 4, softmax over the spatial
positions of each channel multiplied by H·W (a uniform attention is 1, so λ scales a
re-weighting, not a shrinking), and for sizes that are not multiples of 16 the last map is
center-cropped to the size asked for. ``λ = 0`` skips SAM: the output is exactly the plain
DCGAN's. ``forward`` returns the tanh image in [-1, 1]; the synthesizer maps it to the teacher's
normalization.

``output_norm="imagenorm"`` (finegrain's practical setting, not the paper's) normalizes each image
by its own mean and std over (C, H, W) (GroupNorm with one group, no affine) between the RGB conv
and the tanh. Why: every spectral-normed up-block shrinks activations about 3×, so a fresh
paper-mode generator emits nearly flat grey images (per-image std ~0.04 in [0, 1] at CPU widths,
~0.005 at the paper's), on which a teacher predicts one class; a whole short budget is then spent
just finding contrast. With unit-variance logits before the tanh, the first images already have
photo-like contrast (std ~0.3), every image of the batch (a batch norm there would guarantee
contrast to the batch only: a few images could take all of it), each keeping its colour balance
across channels.

``"standardize"`` is DAFL's and DFAD's own placement: an affine-free BatchNorm *after* the tanh,
so the generator emits images already standardized the way the teacher's inputs are (every
channel's batch mean 0 and std 1 in the teacher's normalized space: the real data's pixel mean
and std, whatever they are); the synthesizer then skips its [0, 1] → normalized mapping
(``emits_normalized``). Why it matters on MNIST: a norm before the tanh pins the mean near
mid-grey (pixel mean 0.50, 8 % of pixels dark), while real digits are 87 % black (pixel
mean 0.10), a brightness the teacher never saw. ``"none"`` is the paper's Table 6 architecture,
unchanged.

``grayscale=True`` (off by default, and in the paper) makes the last conv emit one channel and
repeats it into the three the teacher reads. Why: a teacher trained on grey images (MNIST, as
DAFL's and DFAD's MNIST generators emit one channel) has never seen colour, so colour is a
direction the student learns to follow on synthetic images and never meets on real ones. On the
MNIST benchmark's val, a class-conditional generator with L_BN taught a LeNet-5-half student
38.4 % in 90 s with grey images against 14.2 % with colour ones (docs/datafree.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from finegrain.method_config import OUTPUT_NORMS, PAPER_CHANNELS, UPSAMPLINGS  # defined with their config section

SOFTMAX_AXES = ("spatial", "channel")


def make_output_norm(name: str, channels: int = 3) -> nn.Module | None:
    """The normalization of the output (one of ``OUTPUT_NORMS``); ``None`` for the paper's ``"none"``."""
    if name == "standardize":
        return nn.BatchNorm2d(channels, affine=False)
    if name == "imagenorm":
        return nn.GroupNorm(1, channels, affine=False)
    return None


def output_layers(width: int, output_norm: str, grayscale: bool) -> tuple[nn.Conv2d, nn.Module | None]:
    """Both generators' image conv (one grey channel or three colour ones) and its output norm."""
    if output_norm not in OUTPUT_NORMS:
        raise ValueError(f"generator output_norm must be one of {OUTPUT_NORMS}, got {output_norm!r}")
    channels = 1 if grayscale else 3
    return nn.Conv2d(width, channels, 3, padding=1), make_output_norm(output_norm, channels)


def finish_image(x: torch.Tensor, output_norm: nn.Module | None, *, standardized: bool, grayscale: bool,
                 image_size: int) -> torch.Tensor:
    """Both generators' last steps after the image conv: ``output_norm`` before the tanh (after it
    when ``standardized``), one grey channel copied into three, a centre crop to ``image_size``."""
    if output_norm is not None and not standardized:
        x = output_norm(x)
    x = torch.tanh(x)
    if standardized:
        x = output_norm(x)
    if grayscale:
        x = x.repeat(1, 3, 1, 1)  # a copy, not a view: later in-place ops stay legal
    extra = x.shape[-1] - image_size
    if extra:
        start = extra // 2
        x = x[..., start:start + image_size, start:start + image_size]
    return x


def feature_layers(generator: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are a generator's intermediate feature maps, shallowest first: the
    BatchNorm of the FC map, then each up-block. Both generators (this one and
    :class:`~finegrain.models.upsample_generator.UpsampleGenerator`) are built so.

    Why: a method that works on the maps themselves (SpaceshipNet's channel exchange) registers a
    forward hook on one of these modules and returns a changed map; the generator's own ``forward``
    stays exactly what every other method runs."""
    return [generator.bn, *generator.blocks]


def conv_bn_relu(cin: int, cout: int, transposed: bool = False) -> nn.Sequential:
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, cout, 3, padding=1)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SpatialAttention(nn.Module):
    """SAM: encoder–decoder attention whose max-unpool reuses the max-pool's indices."""

    def __init__(self, channels: int, ratio: int = 4, softmax_axis: str = "spatial"):
        super().__init__()
        if softmax_axis not in SOFTMAX_AXES:
            raise ValueError(f"SAM softmax axis must be one of {SOFTMAX_AXES}, got {softmax_axis!r}")
        c = max(1, channels // ratio)
        self.reduce = nn.Conv2d(channels, c, 1)
        self.encode1 = conv_bn_relu(c, 2 * c)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.encode2 = conv_bn_relu(2 * c, 4 * c)
        self.decode1 = conv_bn_relu(4 * c, 2 * c, transposed=True)
        self.unpool = nn.MaxUnpool2d(2)
        self.decode2 = conv_bn_relu(2 * c, c, transposed=True)
        self.expand = nn.Conv2d(c, channels, 1)
        self.softmax_axis = softmax_axis

    def attention_logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encode1(self.reduce(x))
        before_pool = h.shape[-2:]
        h, indices = self.pool(h)
        h = self.decode1(self.encode2(h))
        h = self.unpool(h, indices, output_size=before_pool)
        return self.expand(self.decode2(h))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(A), scaled so that a uniform attention is 1 everywhere."""
        a = self.attention_logits(x)
        b, c, h, w = a.shape
        dim = 2 if self.softmax_axis == "spatial" else 1
        a = a.flatten(2) if dim == 2 else a
        # Shift-invariant: logits more than 80 below the maximum get weight < 2e-35 either way;
        # clamping them keeps exp() out of the denormal range (~10× slower on x86 CPUs).
        a = (a - a.amax(dim, keepdim=True).detach()).clamp_min(-80.0)
        weights = F.softmax(a, dim=dim)
        return weights.view(b, c, h, w) * (h * w) if dim == 2 else weights * c

    def forward(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        return x + strength * (self.weights(x) * x)


def upsampling_conv(cin: int, cout: int, upsampling: str) -> nn.Module:
    """×2 upsampling with a spectral-normed 3×3 kernel: the paper's stride-2 transposed conv, or
    nearest-neighbour resize then a 3×3 conv.

    Why the second: a 3×3 kernel at stride 2 overlaps unevenly (some output pixels get contributions
    from two input pixels, their neighbours from one), which paints a checkerboard on every image
    (Odena, Dumoulin & Olah, "Deconvolution and checkerboard artifacts", Distill 2016); resizing first
    gives every output pixel the same footing. Same parameters, 4× the multiply-adds."""
    if upsampling == "transposed":  # the paper's module, its state-dict keys unchanged
        return spectral_norm(nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1))
    if upsampling == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                             spectral_norm(nn.Conv2d(cin, cout, 3, padding=1)))
    raise ValueError(f"generator upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}")


class UpBlock(nn.Module):
    """×2 upsampling conv (spectral norm) → LeakyReLU → SAM (skipped when λ = 0)."""

    def __init__(self, cin: int, cout: int, *, slope: float, ratio: int, softmax_axis: str, attention: bool,
                 upsampling: str = "transposed"):
        super().__init__()
        self.up = upsampling_conv(cin, cout, upsampling)
        self.act = nn.LeakyReLU(slope, inplace=True)
        self.sam = SpatialAttention(cout, ratio, softmax_axis) if attention else None

    def forward(self, x: torch.Tensor, strength: float) -> torch.Tensor:
        x = self.act(self.up(x))
        if self.sam is None or strength == 0:
            return x
        return self.sam(x, strength)


class AttentionGenerator(nn.Module):
    """``G(z) ∈ [-1, 1]^{3×s×s}`` (standardized instead with ``output_norm="standardize"``);
    ``attention_lambda`` is λ of ``F + λ·softmax(A)⊙F``."""

    def __init__(self, image_size: int, noise_dim: int = 256, channels=PAPER_CHANNELS, *,
                 attention_lambda: float = 0.05, slope: float = 0.2, sam_ratio: int = 4,
                 softmax_axis: str = "spatial", output_norm: str = "none", grayscale: bool = False,
                 upsampling: str = "transposed"):
        super().__init__()
        channels = list(channels)
        if len(channels) != 5:
            raise ValueError(f"generator channels: 5 widths (FC + 4 blocks), got {channels}")
        self.image_size, self.noise_dim = image_size, noise_dim
        self.attention_lambda = float(attention_lambda)
        self.init_size = math.ceil(image_size / 16)
        self.fc = nn.Linear(noise_dim, channels[0] * self.init_size ** 2)
        self.bn = nn.BatchNorm2d(channels[0])
        self.blocks = nn.ModuleList(
            UpBlock(cin, cout, slope=slope, ratio=sam_ratio, softmax_axis=softmax_axis,
                    attention=self.attention_lambda != 0, upsampling=upsampling)
            for cin, cout in zip(channels[:-1], channels[1:]))
        self.grayscale = bool(grayscale)
        # The output norm is registered only when used, so paper-mode state dicts keep exactly the paper's keys.
        self.to_rgb, self.output_norm = output_layers(channels[-1], output_norm, self.grayscale)
        #: True when ``forward`` returns images in the teacher's normalized space, not in [-1, 1]
        self.emits_normalized = output_norm == "standardize"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], -1, self.init_size, self.init_size)
        x = self.bn(x)
        for block in self.blocks:
            x = block(x, self.attention_lambda)
        return finish_image(self.to_rgb(x), self.output_norm, standardized=self.emits_normalized,
                            grayscale=self.grayscale, image_size=self.image_size)
