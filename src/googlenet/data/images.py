"""Reading one image file of any common format and mode as 8-bit RGB (or a float tensor), with one-line errors."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2


class UnreadableImage(ValueError):
    """An image file that cannot be used (damaged, truncated, empty, not an image, too large); the message names
    the file, `path` is it. (One positional message, so a DataLoader worker can re-raise it in the main process.)"""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode: 16-bit and 32-bit grayscale are scaled (not clipped) to 0-255,
    palettes are expanded, alpha is dropped (as torchvision's own loader does), CMYK and 1-bit are
    converted by Pillow."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
            values = values / 257  # 0-65535 onto 0-255
        elif image.mode == "F" and values.max(initial=0) <= 1:
            values = values * 255
        image = Image.fromarray(np.clip(np.nan_to_num(np.rint(values)), 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow asks for this order so the transparent colour is honoured
    return image.convert("RGB")


def _decode(path: Path) -> Image.Image:
    """Pillow's decoding, upright (EXIF orientation applied); over Image.MAX_IMAGE_PIXELS pixels is refused
    before any pixel is decoded (Pillow only warns between that limit and twice it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image)


def load_image(path: str | os.PathLike) -> Image.Image:
    """The image at `path` as 8-bit RGB; FileNotFoundError, or UnreadableImage (a ValueError, one line naming
    the file) when it cannot be used."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if path.is_dir():
        raise UnreadableImage(f"{path} is a folder, not an image file", path)
    if path.stat().st_size == 0:
        raise UnreadableImage(f"{path} is empty (0 bytes)", path)
    try:
        return to_rgb(_decode(path))
    except UnidentifiedImageError:
        raise UnreadableImage(f"{path} is not an image file (unknown or damaged format)", path) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnreadableImage(f"{path} is refused as a possible decompression bomb ({err})", path) from None
    except Exception as err:  # Pillow's decoders raise many types for damaged data (its own fuzzers catch all)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnreadableImage(f"{path} is not a readable image ({reason})", path) from None


def image_tensor(image: Image.Image | str | os.PathLike) -> torch.Tensor:
    """An RGB image (decoded, or a file to decode) as a float (3, H, W) tensor in [0, 1]."""
    image = image if isinstance(image, Image.Image) else load_image(image)
    return v2.functional.to_dtype(v2.functional.pil_to_tensor(image), torch.float32, scale=True)
