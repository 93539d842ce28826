"""A grid of images with the model's prediction under each, green when right and red when
wrong, so a person sees at a glance which kinds of images fail."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from finegrain.viz.png import new_figure

RIGHT, WRONG = "#1a7f37", "#cf222e"


@dataclass
class Prediction:
    image: np.ndarray  # HxWx3 floats in [0, 1] or uint8
    true_class: str
    predicted_class: str
    probability: float

    @property
    def correct(self) -> bool:
        return self.true_class == self.predicted_class


def to_hwc(image) -> np.ndarray:
    """A CHW tensor in [0, 1], a PIL image or an HWC array -> HWC array for imshow."""
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
    return np.asarray(image)


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def prediction_grid(predictions: list[Prediction], columns: int = 6, title: str | None = None):
    """Each tile: the image framed in green/red, the predicted class with its probability, the
    true class underneath when the prediction is wrong."""
    if not predictions:
        raise ValueError("no images to draw")
    columns = min(columns, len(predictions))
    lines = math.ceil(len(predictions) / columns)
    fig = new_figure(2.3 * columns, 2.75 * lines)
    for index, item in enumerate(predictions):
        ax = fig.add_subplot(lines, columns, index + 1)
        ax.imshow(to_hwc(item.image))
        colour = RIGHT if item.correct else WRONG
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(4)
        ax.set_xticks([])
        ax.set_yticks([])
        label = f"{_short(item.predicted_class)} {100 * item.probability:.0f}%"
        if not item.correct:
            label += f"\ntrue: {_short(item.true_class)}"
        ax.set_title(("✓ " if item.correct else "✗ ") + label, color=colour, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def tile_images(images: list, columns: int = 2, gap: int = 6):
    """PIL images of one size pasted into a single sheet, ``columns`` wide, white gaps between."""
    from PIL import Image

    if not images:
        raise ValueError("no images to tile")
    width, height = images[0].size
    lines = math.ceil(len(images) / columns)
    columns = min(columns, len(images))
    sheet = Image.new("RGB", (columns * width + (columns - 1) * gap, lines * height + (lines - 1) * gap), "white")
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        sheet.paste(image.convert("RGB"), (column * (width + gap), row * (height + gap)))
    return sheet
