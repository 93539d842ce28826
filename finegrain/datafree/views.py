"""Random views of a synthetic batch that gradients flow through (CMI's two crops).

Instance discrimination needs two different looks at the same synthetic image; the generator
learns through both, so the augmentation must be differentiable. Each view is one per-sample
affine resampling (``affine_grid`` + ``grid_sample``): a random square crop covering a fraction
``scale`` of the area, at a random position, optionally mirrored, resized back to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_view(images: torch.Tensor, scale: tuple[float, float] = (0.25, 1.0), flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Per sample: crop a square of area fraction in ``scale``, mirror with p = 0.5, resize back."""
    n, device = images.shape[0], images.device
    rand = lambda: torch.rand(n, generator=generator).to(device)  # noqa: E731
    low, high = scale
    side = (low + (high - low) * rand()).sqrt()            # crop side as a fraction of the image side
    cx = (2 * rand() - 1) * (1 - side)                     # keep the crop inside the image
    cy = (2 * rand() - 1) * (1 - side)
    mirror = torch.where(rand() < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=device)
    theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0] = side * mirror
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = side
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
