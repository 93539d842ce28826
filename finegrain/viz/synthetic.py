"""What a data-free synthesizer makes, as the teacher sees it: a grid of synthetic images with
the teacher's predicted class and confidence under each.

Looking at the grid is the quickest check of a data-free run: images that all get one class, or
low confidence everywhere, mean the synthesizer has not found the teacher's classes.
"""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw, ImageFont

from finegrain.engine import checkpoint as ckpt
from finegrain.errors import CheckpointError

LABEL_HEIGHT = 24


def load_distiller(path):
    """Rebuild the data-free method of a checkpoint (teacher from its own file) with its state."""
    from finegrain import methods
    from finegrain.config import Config
    from finegrain.inference import resolve_checkpoint

    sidecar = resolve_checkpoint(path, training=True)
    meta, tensors, _ = ckpt.load_checkpoint(sidecar, with_state=False)
    name = meta.get("method")
    if name is None or methods.get(name).cls.needs_train_data:
        raise CheckpointError(f"{sidecar}: written by method {name!r}, which has no synthesizer (need a data-free run)")
    cfg = Config.from_dict(meta["config"], str(sidecar))
    method = methods.create(name, cfg, meta["class_names"])
    method.load_checkpoint_state(tensors)
    return method, meta


def _tile(image: Image.Image, label: str, size: int, font) -> Image.Image:
    tile = Image.new("RGB", (size, size + LABEL_HEIGHT), "white")
    tile.paste(image.resize((size, size), Image.NEAREST), (0, 0))
    ImageDraw.Draw(tile).text((2, size + 2), label, fill="black", font=font)
    return tile


def draw_grid(unit_images: torch.Tensor, labels: list[str], tile_size: int = 96) -> Image.Image:
    """[0, 1] images (N×3×H×W) in a near-square grid, each with its label line underneath."""
    n = unit_images.shape[0]
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    font = ImageFont.load_default()
    grid = Image.new("RGB", (columns * tile_size, rows * (tile_size + LABEL_HEIGHT)), "white")
    pixels = (unit_images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        tile = _tile(Image.fromarray(pixels[i]), labels[i], tile_size, font)
        grid.paste(tile, ((i % columns) * tile_size, (i // columns) * (tile_size + LABEL_HEIGHT)))
    return grid


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "~"


@torch.no_grad()
def synthetic_grid(checkpoint_path, n: int = 64, seed: int = 0, tile_size: int = 96) -> tuple[Image.Image, dict]:
    """``n`` synthetic images of a data-free run with the teacher's prediction under each.

    Returns the picture and a summary: predicted class and confidence per image, and per
    predicted class its count and the teacher's mean confidence.
    """
    method, meta = load_distiller(checkpoint_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        images = method.synthesizer.sample(n)
    probabilities = method.teacher(images).float().softmax(1)
    confidence, predicted = probabilities.max(1)
    names = [method.class_names[i] for i in predicted.tolist()]
    width = max(4, tile_size // 6 - 4)  # characters that fit beside " 99%" in the default 6-px font
    labels = [f"{_short(name, width)} {100 * c:.0f}%" for name, c in zip(names, confidence.tolist())]
    picture = draw_grid(method.synthesizer.normalizer.to_unit(images), labels, tile_size)
    per_class: dict[str, list[float]] = {}
    for name, c in zip(names, confidence.tolist()):
        per_class.setdefault(name, []).append(c)
    summary = {
        "checkpoint": meta["_path"],
        "method": meta["method"],
        "n": n,
        "seed": seed,
        "predicted": names,
        "confidence": confidence.tolist(),
        "mean_confidence": float(confidence.mean()),
        "classes_covered": len(per_class),
        "class_counts": {k: len(v) for k, v in sorted(per_class.items())},
        "mean_confidence_per_class": {k: sum(v) / len(v) for k, v in sorted(per_class.items())},
    }
    return picture, summary
