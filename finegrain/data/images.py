"""Reading one image safely: every failure becomes a one-line DataError naming the file.

Fine-grained datasets are scraped from the web and carry grayscale, CMYK, 16-bit, truncated and
oversized files; a PIL traceback from inside a loader worker tells a user nothing.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageFile

from finegrain.errors import DataError

# Refuse images above this many pixels (decompression bombs); PIL only warns below 2x its limit.
MAX_PIXELS = 89_478_485


def load_rgb(path: str) -> Image.Image:
    """Open ``path`` as an 8-bit RGB image, converting grayscale, palette, CMYK and 16-bit."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(
                        f"{path}: image too large ({img.width}x{img.height} pixels > {MAX_PIXELS}); possible decompression bomb"
                    )
                img.load()
                return _to_rgb8(img)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"{path}: image too large, possible decompression bomb ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: unreadable or corrupt image ({reason})") from None


def _to_rgb8(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit single channel: rescale to 0..255 instead of letting PIL clip.
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8))
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")
