"""Figures and images to PNG bytes and files: one place that fixes the resolution and closes
figures, so a report with many plots does not keep them all in memory."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def figure_png(fig) -> bytes:
    """PNG bytes of a matplotlib figure, which is closed afterwards."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def image_png(image) -> bytes:
    """PNG bytes of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_png(obj) -> bytes:
    return image_png(obj) if hasattr(obj, "getpixel") else figure_png(obj)


def write_png(obj, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_png(obj))
    return path


def new_figure(width: float, height: float):
    return plt.figure(figsize=(width, height))
