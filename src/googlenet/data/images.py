"""Reading image files of any common format and mode as 8-bit RGB (in full, or a JPEG at the reduced scale that a
crop needs), with one-line errors."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
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


@contextlib.contextmanager
def _pillow(name: str | os.PathLike) -> Iterator[None]:
    """Pillow's failures inside as one-line UnreadableImage errors naming `name`; an image over
    Image.MAX_IMAGE_PIXELS is refused when its header is read, before any pixel is decoded (Pillow only warns
    between that limit and twice it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except UnidentifiedImageError:
        raise UnreadableImage(f"{name} is not an image file (unknown or damaged format)", name) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnreadableImage(f"{name} is refused as a possible decompression bomb ({err})", name) from None
    except Exception as err:  # Pillow's decoders raise many types for damaged data (its own fuzzers catch all)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnreadableImage(f"{name} is not a readable image ({reason})", name) from None


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
    return _rgb(path, path)


def image_from_bytes(data: bytes, name: str = "the upload") -> Image.Image:
    """An encoded image (a file's bytes: an upload) as 8-bit RGB, with `load_image`'s checks and one-line
    UnreadableImage errors, naming it `name`."""
    if not data:
        raise UnreadableImage(f"{name} is empty (0 bytes)", name)
    return _rgb(io.BytesIO(data), name)


def _rgb(source: Path | io.BytesIO, name: str | os.PathLike) -> Image.Image:
    """Pillow's decoding of `source`, upright (EXIF orientation applied), as 8-bit RGB."""
    with _pillow(name), Image.open(source) as image:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))


def image_tensor(image: Image.Image | str | os.PathLike) -> torch.Tensor:
    """An RGB image (decoded, or a file to decode) as a float (3, H, W) tensor in [0, 1]."""
    image = image if isinstance(image, Image.Image) else load_image(image)
    return v2.functional.to_dtype(v2.functional.pil_to_tensor(image), torch.float32, scale=True)


class EncodedImage(NamedTuple):
    """An image file's bytes, not yet decoded: what training reads, so that the augmentation decodes only at the
    scale its random crop needs (`decode_scaled`)."""

    path: str
    data: bytes


def read_encoded(path: str | os.PathLike) -> EncodedImage:
    """The bytes of the image file at `path`; FileNotFoundError, or UnreadableImage for a folder or an empty file
    (damaged contents are found when it is decoded)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if path.is_dir():
        raise UnreadableImage(f"{path} is a folder, not an image file", path)
    data = path.read_bytes()
    if not data:
        raise UnreadableImage(f"{path} is empty (0 bytes)", path)
    return EncodedImage(str(path), data)


_EXIF_ORIENTATION, _TRANSPOSED = 0x0112, (5, 6, 7, 8)  # orientations that swap width and height
# OpenCV's DCT-scaling flags without their BGR bit (IMREAD_COLOR), to be combined with IMREAD_COLOR_RGB.
_REDUCED = {1: 0, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
_REDUCED = {r: flag & ~cv2.IMREAD_COLOR for r, flag in _REDUCED.items()}


def jpeg_size(image: EncodedImage) -> tuple[int, int] | None:
    """The (width, height) of an encoded JPEG as it stands upright (EXIF orientation applied), read from its header;
    None for other formats. A header that is not an image, or one over Image.MAX_IMAGE_PIXELS, is an
    UnreadableImage, as in `load_image`."""
    with _pillow(image.path), Image.open(io.BytesIO(image.data)) as header:  # the markers only, no pixel data
        if header.format != "JPEG":
            return None
        width, height = header.size
        if header.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSED:
            width, height = height, width
        return width, height


def decode_scaled(image: EncodedImage, reduction: int) -> np.ndarray:
    """An encoded JPEG as an upright (H, W, 3) uint8 RGB array, decoded at 1/`reduction` of its size (1, 2, 4 or 8)
    by libjpeg-turbo's DCT scaling through OpenCV: the scaling is part of the inverse DCT, so a reduced decode
    costs a fraction of a full one and is itself a low-pass resize. Damaged or truncated data is an UnreadableImage."""
    pixels = cv2.imdecode(np.frombuffer(image.data, np.uint8), _REDUCED[reduction] | cv2.IMREAD_COLOR_RGB)
    if pixels is None:
        raise UnreadableImage(f"{image.path} is not a readable image (damaged or truncated JPEG data)", image.path)
    return pixels
