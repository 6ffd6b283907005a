"""Reading image files of any common format and mode as 8-bit RGB (in full, or a JPEG at the reduced scale that a
crop needs), with one-line errors."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2

_jpeg: ModuleType | None
try:  # the optional compiled part (setup.py): region decoding with libjpeg-turbo
    import googlenet.data._jpeg as _jpeg
except ImportError:  # built without a compiler or libjpeg's headers: whole images through OpenCV, the same pixels
    _jpeg = None


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


def image_suffixes() -> set[str]:
    """The file endings Pillow opens, in lower case (.jpg, .png, .bmp, .tif, .webp, ...)."""
    return {suffix.lower() for suffix in Image.registered_extensions()}


def image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """`paths` with each folder replaced by the image files under it: recursively, in sorted order, those whose
    ending Pillow opens (others, and hidden files and folders, are passed over). Files are kept as given."""
    suffixes, found = image_suffixes(), []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        for file in sorted(path.rglob("*")):
            hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
            if file.is_file() and file.suffix.lower() in suffixes and not hidden:
                found.append(file)
    return found


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


class JpegHeader(NamedTuple):
    """An encoded JPEG's size as it stands upright (EXIF orientation applied), and whether a region of it can be
    decoded alone (`decode_crop`): stored upright, RGB-convertible, with its end-of-image marker."""

    width: int
    height: int
    regional: bool


def jpeg_size(image: EncodedImage) -> JpegHeader | None:
    """The upright size of an encoded JPEG, read from its markers; None for other formats. A header that is not an
    image, or one over Image.MAX_IMAGE_PIXELS, is an UnreadableImage, as in `load_image`."""
    if _jpeg is not None and image.data[:2] == b"\xff\xd8":
        try:
            width, height, turn = _jpeg.header(image.data)
        except ValueError:  # damaged, CMYK: Pillow below says why or reads it
            pass
        else:
            if Image.MAX_IMAGE_PIXELS is None or width * height <= Image.MAX_IMAGE_PIXELS:
                # a file cut short decodes in full (below the crop is not read), to be found damaged as before
                regional = turn == 1 and image.data.endswith(b"\xff\xd9")
                upright = (height, width) if turn in _TRANSPOSED else (width, height)
                return JpegHeader(*upright, regional)
    with _pillow(image.path), Image.open(io.BytesIO(image.data)) as header:  # the markers only, no pixel data
        if header.format != "JPEG":
            return None
        width, height = header.size
        if header.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSED:
            width, height = height, width
        return JpegHeader(width, height, False)


def decode_crop(image: EncodedImage, header: JpegHeader, reduction: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """The crop `box` (top, left, height, width, in the upright full-size image) of an encoded JPEG decoded at
    1/`reduction` scale (`decode_scaled`), as an (H, W, 3) uint8 RGB array. Where the header allows, only the
    crop's rows and columns are decoded, and nothing after its last row (libjpeg-turbo's jpeg_skip_scanlines and
    jpeg_crop_scanline): the same pixels as cutting the crop from the whole decode, for a fraction of its cost."""
    scaled = (-(-header.height // reduction), -(-header.width // reduction))  # libjpeg rounds a reduced side up
    sy, sx = scaled[0] / header.height, scaled[1] / header.width
    top, left = round(box[0] * sy), round(box[1] * sx)
    bottom, right = max(round((box[0] + box[2]) * sy), top + 1), max(round((box[1] + box[3]) * sx), left + 1)
    if header.regional and _jpeg is not None:
        try:
            data = _jpeg.decode_region(image.data, reduction, top, left, bottom, right)
            return np.frombuffer(data, np.uint8).reshape(bottom - top, right - left, 3)
        except ValueError:  # damaged data (libjpeg's errors and warnings): the whole decode below says so
            pass
    return decode_scaled(image, reduction)[top:bottom, left:right]


def decode_scaled(image: EncodedImage, reduction: int) -> np.ndarray:
    """An encoded JPEG as an upright (H, W, 3) uint8 RGB array, decoded at 1/`reduction` of its size (1, 2, 4 or 8)
    by libjpeg-turbo's DCT scaling through OpenCV: the scaling is part of the inverse DCT, so a reduced decode
    costs a fraction of a full one and is itself a low-pass resize. Damaged or truncated data is an UnreadableImage."""
    pixels = cv2.imdecode(np.frombuffer(image.data, np.uint8), _REDUCED[reduction] | cv2.IMREAD_COLOR_RGB)
    if pixels is None:
        raise UnreadableImage(f"{image.path} is not a readable image (damaged or truncated JPEG data)", image.path)
    return pixels
