"""Random views of a batch on the training device, resampled in one differentiable step.

Every batch-tensor view in finegrain — CSDNet's SSDP crops and its random views
(:mod:`finegrain.models.ssdp`), CMI's two crops and the pool views of the data-free synthesizers
— is a per-sample affine map (crop box, mirror, rotation) applied with one ``affine_grid`` +
``grid_sample`` call: :func:`affine_view`. Gradients flow through it, so a generator can learn
through its own views (CMI's instance discrimination).

Samplers that choose the boxes stay with their callers on purpose: each draws its random numbers
in its own order and from its own stream (a CPU generator here, :class:`~finegrain.models.ssdp.RankSlice`
in CSDNet), and the published runs depend on that order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def affine_view(images: torch.Tensor, centre_x: torch.Tensor, centre_y: torch.Tensor, half_width: torch.Tensor,
                half_height: torch.Tensor, mirror: torch.Tensor, degrees: torch.Tensor | None = None,
                padding_mode: str = "zeros") -> torch.Tensor:
    """Per sample: the box (centre, half sizes; grid_sample coordinates in [-1, 1]) resized to
    the input size, mirrored where ``mirror`` is -1 (+1 keeps it), rotated by ``degrees``."""
    if degrees is None:
        row0 = [half_width * mirror, torch.zeros_like(half_width), centre_x]
        row1 = [torch.zeros_like(half_height), half_height, centre_y]
    else:
        angle = degrees * math.pi / 180
        cos, sin = torch.cos(angle), torch.sin(angle)
        row0 = [half_width * cos * mirror, -half_width * sin, centre_x]
        row1 = [half_height * sin * mirror, half_height * cos, centre_y]
    theta = torch.stack([torch.stack(row0, 1), torch.stack(row1, 1)], 1).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def random_crop_view(images: torch.Tensor, scale: tuple[float, float] = (0.25, 1.0), flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """CMI's view: per sample, a square crop of area fraction in ``scale`` at a random position,
    mirrored with p = 0.5, resized back (reflection padding)."""
    n, device = images.shape[0], images.device
    rand = lambda: torch.rand(n, generator=generator).to(device)  # noqa: E731
    low, high = scale
    side = (low + (high - low) * rand()).sqrt()            # crop side as a fraction of the image side
    cx = (2 * rand() - 1) * (1 - side)                     # keep the crop inside the image
    cy = (2 * rand() - 1) * (1 - side)
    mirror = torch.where(rand() < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=device)
    return affine_view(images, cx, cy, side, side, mirror, padding_mode="reflection")
