"""Reading one image file of any common format and mode as 8-bit RGB, with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode: 16-bit and 32-bit grayscale are scaled (not clipped) to 0-255,
    palettes are expanded, alpha is dropped (as torchvision's own loader does)."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
            values = values / 257  # 0-65535 onto 0-255
        elif image.mode == "F" and values.max(initial=0) <= 1:
            values = values * 255
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow asks for this order so the transparent colour is honoured
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """The image at `path` as 8-bit RGB; FileNotFoundError or ValueError (one line) when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image file")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file (unknown or damaged format)") from None
    except (OSError, SyntaxError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path} is not a readable image ({reason})") from None
