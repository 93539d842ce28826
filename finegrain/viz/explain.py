"""What CSDNet looks at: the activation map and the SSDP view, as one picture per image.

SSDP builds its augmented view from the network's own activation map, so the same map explains
a prediction: a strip of four panels per image — the input, the activation map over it, the most
salient region SSDP would erase or crop to, and the resulting augmented view.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw

from finegrain.data.transforms import denormalize

TITLES = ("input", "activation map", "SSDP region", "SSDP view")
HEADER = 14


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """B×3×H×W in [0, 1] -> B×H×W×3 uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _overlay(rgb: np.ndarray, saliency: np.ndarray, weight: float = 0.5) -> np.ndarray:
    heat = colormaps["jet"](saliency)[..., :3] * 255
    return (rgb * (1 - weight) + heat * weight).astype(np.uint8)


def _strip(panels: list[np.ndarray], caption: str) -> Image.Image:
    h, w = panels[0].shape[:2]
    canvas = Image.new("RGB", (w * len(panels), h + HEADER), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, title) in enumerate(zip(panels, (*TITLES[:-1], caption))):
        canvas.paste(Image.fromarray(panel), (i * w, HEADER))
        draw.text((i * w + 2, 1), title, fill="black")
    return canvas


@torch.no_grad()
def explain(classifier, images, mean, std, ssdp_cfg=None, seed: int = 0) -> list[Image.Image]:
    """One PIL strip per image: input | activation map | SSDP region | SSDP view.

    ``images``: normalized B×3×H×W tensor (or a list of 3×H×W tensors) as the classifier sees
    them; ``mean``/``std`` undo the normalization for display; ``ssdp_cfg`` is a ``csdnet``
    config section (defaults when None). ``seed`` fixes SSDP's random threshold, erase-or-crop
    draw and viewpoint, so the same call gives the same picture.
    """
    from finegrain.methods.csdnet import CSDNetConfig, build_ssdp

    batch = torch.stack(list(images)) if not isinstance(images, torch.Tensor) else images
    device = next(classifier.parameters()).device
    batch = batch.to(device).float()
    was_training = classifier.training
    classifier.eval()
    taps = classifier.forward_taps(batch)
    classifier.train(was_training)
    ssdp = build_ssdp(ssdp_cfg or CSDNetConfig())
    generator = torch.Generator(device=device).manual_seed(seed)
    out = ssdp(batch, taps.feature_map, generator=generator)
    raw = _to_uint8(denormalize(batch, mean, std))
    view = _to_uint8(denormalize(out.view, mean, std))
    saliency = out.saliency[:, 0].cpu().numpy()
    region = out.region[:, 0].cpu().numpy()[..., None]
    strips = []
    for i in range(batch.shape[0]):
        spotlight = (raw[i] * np.where(region[i], 1.0, 0.25)).astype(np.uint8)
        caption = "SSDP view (erased)" if bool(out.erased[i]) else "SSDP view (cropped)"
        strips.append(_strip([raw[i], _overlay(raw[i], saliency[i]), spotlight, view[i]], caption))
    return strips
