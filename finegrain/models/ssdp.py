"""CSDNet's SSDP: an augmented view that spotlights where the subcategories differ.

Ultra-fine-grained classes (cultivars of one species) differ in small parts. SSDP builds, for each
training image, a second view from the network's own activation map: with probability ``p_drop``
the most salient region is erased (the network must find other evidence), otherwise the view is
cropped to that region and resized back (the network looks closer at it); a flip and a small
rotation add a change of viewpoint. finegrain's reading of the paper (docs/methods.md, CSDNet: SSDP):

1. ``A = mean_c F`` of the raw view's last feature map (detached), upsampled to the image size
   and min–max normalized per image;
2. smoothed with a k×k average or Gaussian kernel, k = ``kernel_size`` at ``kernel_ref_size`` px
   and scaled with the resolution, so the mask follows parts rather than pixels;
3. thresholded at ``θ·max(A)`` with ``θ ~ U(theta_min, theta_max)``;
4. erase or crop as above, then horizontal flip and rotation by up to ``rotation`` degrees.

Everything is batched tensor work on the training device (one ``grid_sample`` per batch): no
data-loader worker and no extra forward pass is involved. ``random_view`` is the standard random
augmentation (resized crop, flip, rotation) used in place of SSDP when SSDP is switched off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from finegrain.data.views import affine_view


@dataclass
class SSDPOutput:
    view: torch.Tensor      # B×3×H×W augmented images (normalized like the input)
    saliency: torch.Tensor  # B×1×H×W smoothed activation map in [0, 1]
    region: torch.Tensor    # B×1×H×W bool, the most salient region
    erased: torch.Tensor    # B bool: region erased (True) or cropped to (False)


def activation_map(feature_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Channel mean of ``feature_map``, at ``size``, min–max normalized per image (step 1)."""
    a = feature_map.detach().float().mean(1, keepdim=True)
    a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    low = a.amin(dim=(2, 3), keepdim=True)
    high = a.amax(dim=(2, 3), keepdim=True)
    return (a - low) / (high - low).clamp_min(1e-6)


def scaled_kernel(kernel_size: int, image_size: int, reference_size: int) -> int:
    """``kernel_size`` at ``reference_size`` px, scaled to ``image_size`` and kept odd."""
    k = max(1, round(kernel_size * image_size / reference_size))
    return k if k % 2 else k + 1


def smooth(a: torch.Tensor, k: int, kind: str = "average") -> torch.Tensor:
    """k×k average or Gaussian smoothing of a B×1×H×W map (step 2)."""
    if k <= 1:
        return a
    if kind == "average":
        return F.avg_pool2d(a, k, stride=1, padding=k // 2, count_include_pad=False)
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8  # OpenCV's default sigma for a k-tap Gaussian
    x = torch.arange(k, device=a.device, dtype=a.dtype) - k // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    padded = F.pad(a, (k // 2,) * 4, mode="replicate")
    out = F.conv2d(padded, g.view(1, 1, 1, k))
    return F.conv2d(out, g.view(1, 1, k, 1))


def region_boxes(region: torch.Tensor) -> torch.Tensor:
    """Bounding boxes (x0, y0, x1, y1) in grid_sample coordinates [-1, 1] of B×1×H×W masks;
    an empty mask gives the whole image."""
    b, _, h, w = region.shape
    cols, rows = region[:, 0].any(1), region[:, 0].any(2)
    x0 = cols.float().argmax(1)
    x1 = w - 1 - cols.flip(1).float().argmax(1)
    y0 = rows.float().argmax(1)
    y1 = h - 1 - rows.flip(1).float().argmax(1)
    boxes = torch.stack([2 * x0 / w - 1, 2 * y0 / h - 1, 2 * (x1 + 1) / w - 1, 2 * (y1 + 1) / h - 1], 1).float()
    empty = ~cols.any(1)
    boxes[empty] = torch.tensor([-1.0, -1.0, 1.0, 1.0], device=region.device)
    return boxes


def warp(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Crop each image to its box, resize back, flip and rotate: one batched ``grid_sample``."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    sx, sy = (boxes[:, 2] - boxes[:, 0]) / 2, (boxes[:, 3] - boxes[:, 1]) / 2
    mirror = 1 - 2 * flip.float()  # -1 mirrors the output horizontally
    return affine_view(images, cx, cy, sx, sy, mirror, degrees, padding_mode="zeros")


class RankSlice:
    """Per-sample random numbers that do not depend on how a global batch is split over ranks.

    Every rank seeds the same generator, draws for the whole global batch and keeps the positions
    ``rank::world`` — the order in which the shared sampler deals a global batch out — so N
    processes with batch B draw exactly what one process with batch N·B draws.
    """

    def __init__(self, seed: int, world: int = 1, rank: int = 0):
        self.generator = torch.Generator().manual_seed(seed)
        self.world, self.rank = world, rank

    def rand(self, n: int, device) -> torch.Tensor:
        return torch.rand(n * self.world, generator=self.generator)[self.rank::self.world].to(device)


def _rand(n: int, like: torch.Tensor, generator=None) -> torch.Tensor:
    """``generator``: None (global RNG), a ``torch.Generator`` or a :class:`RankSlice`."""
    if isinstance(generator, RankSlice):
        return generator.rand(n, like.device)
    return torch.rand(n, device=like.device, generator=generator)


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator=None) -> torch.Tensor:
    return low + (high - low) * _rand(n, like, generator)


def viewpoint(n: int, like: torch.Tensor, flip_prob: float, rotation: float, generator=None):
    """Random horizontal flips and rotation angles (step 4)."""
    flip = _rand(n, like, generator) < flip_prob
    return flip, _uniform(n, -rotation, rotation, like, generator)


class SSDP(nn.Module):
    """Adaptive, content-aware masking of the raw view (no parameters)."""

    def __init__(self, theta_min: float = 0.5, theta_max: float = 0.8, p_drop: float = 0.5, kernel_size: int = 7,
                 kernel_ref_size: int = 224, kernel: str = "average", flip_prob: float = 0.5, rotation: float = 10.0):
        super().__init__()
        if not 0 <= theta_min <= theta_max <= 1:
            raise ValueError(f"need 0 <= theta_min <= theta_max <= 1, got {theta_min}, {theta_max}")
        self.theta = (theta_min, theta_max)
        self.p_drop, self.kernel_size, self.kernel_ref_size, self.kernel = p_drop, kernel_size, kernel_ref_size, kernel
        self.flip_prob, self.rotation = flip_prob, rotation

    def saliency(self, feature_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        k = scaled_kernel(self.kernel_size, size[0], self.kernel_ref_size)
        return smooth(activation_map(feature_map, size), k, self.kernel)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, feature_map: torch.Tensor, generator=None) -> SSDPOutput:
        b, _, h, w = images.shape
        a = self.saliency(feature_map, (h, w))
        theta = _uniform(b, *self.theta, images, generator).view(b, 1, 1, 1)
        region = a > theta * a.amax(dim=(2, 3), keepdim=True)
        erased = _rand(b, images, generator) < self.p_drop
        # Erase: zero after normalization is the dataset's mean colour.
        masked = torch.where(erased.view(b, 1, 1, 1) & region, torch.zeros_like(images), images)
        boxes = region_boxes(region)
        boxes[erased] = torch.tensor([-1.0, -1.0, 1.0, 1.0], device=images.device)
        flip, degrees = viewpoint(b, images, self.flip_prob, self.rotation, generator)
        return SSDPOutput(warp(masked, boxes, flip, degrees), a, region, erased)


@torch.no_grad()
def random_view(images: torch.Tensor, min_scale: float = 0.35, flip_prob: float = 0.5, rotation: float = 10.0,
                generator=None) -> torch.Tensor:
    """Standard augmentation on the batch tensor: random resized crop, flip, small rotation."""
    b = images.shape[0]
    area = _uniform(b, min_scale, 1.0, images, generator)
    log_ratio = _uniform(b, math.log(3 / 4), math.log(4 / 3), images, generator)
    width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0) * 2
    height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0) * 2
    x0 = -1 + (2 - width) * _rand(b, images, generator)
    y0 = -1 + (2 - height) * _rand(b, images, generator)
    boxes = torch.stack([x0, y0, x0 + width, y0 + height], 1)
    flip, degrees = viewpoint(b, images, flip_prob, rotation, generator)
    return warp(images, boxes, flip, degrees)
