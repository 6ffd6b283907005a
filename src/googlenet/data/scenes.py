"""Detection scenes built from real photographed objects: Fashion-MNIST articles pasted at widely varying
scales, tints and contrasts, overlapping and cut by the border, onto backgrounds of three styles (generated
clutter, textures, photographs), written as JPEG + VOC XML (so the detection reader serves them and real
datasets alike). ILSVRC's detection data cannot be downloaded here; these stand in for it."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from googlenet.data.detection import Annotation, write_xml
from googlenet.data.fashion_mnist import FashionMNIST

STYLES = ("clutter", "texture", "photo")

# Photographs and photographed textures that installed packages ship (scikit-image's sample data, matplotlib's
# grace_hopper.jpg), split so that test scenes are drawn on pictures no train scene shows.
PHOTOS = {
    "train": ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "camera", "coins", "moon"),
    "test": ("chelsea", "motorcycle", "grace_hopper", "retina", "cell", "page"),
}
TEXTURES = {"train": ("brick", "grass"), "test": ("gravel",)}


@functools.cache
def _picture(name: str) -> np.ndarray:
    """One shipped picture as (H, W, 3) uint8."""
    if name == "grace_hopper":
        from matplotlib import cbook

        pixels = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    else:
        import skimage.data

        pixels = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])


def _resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W) or (H, W, 3) pixels, clipped to 0-255, bilinearly resized to `width` x `height` as float."""
    # Pillow sets Image.BILINEAR at import time, unseen by its type hints; their Image.Resampling.BILINEAR needs
    # Pillow 9.1, newer than the pillow>=8.4 this package supports.
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return np.asarray(image.resize((width, height), Image.BILINEAR), np.float32)  # type: ignore[attr-defined]


def _clutter(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A colour gradient, a sinusoidal texture, noise and random filled shapes (H, W, 3) float."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    t = (x * math.cos(angle) + y * math.sin(angle)) / (width + height) + 0.5
    image = start + (end - start) * t[..., None]
    period, phase, theta = rng.uniform(4, 40), rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi)
    texture = np.sin((x * math.cos(theta) + y * math.sin(theta)) * 2 * math.pi / period + phase)
    image += rng.uniform(0, 40) * texture[..., None] * rng.uniform(0.3, 1, 3)
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 15)):
        x0, y0 = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height
        w, h = rng.uniform(10, width / 3), rng.uniform(10, height / 3)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(3)
        if shape == 0:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        elif shape == 1:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.line((x0, y0, x0 + w, y0 + h), fill=colour, width=int(rng.integers(1, 6)))
    noise = rng.normal(0, rng.uniform(2, 20), (height, width, 3))
    return np.asarray(canvas, np.float32) + noise


def _noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Fractal value noise in [0, 1] (H, W): octaves of random grids, bilinearly enlarged, halving in weight."""
    total = np.zeros((height, width), np.float32)
    cells = int(rng.integers(2, 6))
    for octave in range(5):
        grid = rng.uniform(0, 255, (cells << octave, cells << octave)).astype(np.float32)
        total += 0.5**octave * _resized(grid, width, height)
    return (total - total.min()) / max(float(np.ptp(total)), 1e-6)


def _texture(rng: np.random.Generator, width: int, height: int, split: str) -> np.ndarray:
    """Procedural textures (fractal noise, stripes or checks) or a photographed one (brick, grass, gravel)
    tiled at a random scale, each in random colours (H, W, 3) float."""
    low, high = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(3)
    if kind == 0:
        t = _noise(rng, width, height)
    elif kind == 1:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        period, theta = rng.uniform(6, 60), rng.uniform(0, math.pi)
        u = (x * math.cos(theta) + y * math.sin(theta)) / period
        v = (-x * math.sin(theta) + y * math.cos(theta)) / period
        t = (np.floor(u) + np.floor(v)) % 2 if rng.random() < 0.5 else 0.5 + 0.5 * np.sin(2 * math.pi * u)
        t = 0.7 * t + 0.3 * _noise(rng, width, height)
    else:
        names = TEXTURES["train" if split == "train" else "test"]
        pixels = _picture(names[int(rng.integers(len(names)))])[..., 0]
        scale = rng.uniform(0.5, 2.0)
        tile = _resized(pixels, *(max(8, round(s * scale)) for s in pixels.shape[1::-1]))
        tiled = np.tile(tile, (math.ceil(height / tile.shape[0]) + 1, math.ceil(width / tile.shape[1]) + 1))
        y0, x0 = int(rng.integers(tile.shape[0])), int(rng.integers(tile.shape[1]))
        t = tiled[y0 : y0 + height, x0 : x0 + width] / 255.0
    image = low + (high - low) * t[..., None]
    return image + rng.normal(0, rng.uniform(1, 10), (height, width, 3))


def _photo(rng: np.random.Generator, width: int, height: int, split: str) -> np.ndarray:
    """A random crop (a tenth of the picture up to all of it, the scene's aspect) of a photograph, flipped at
    random, in jittered brightness, contrast and colour (H, W, 3) float."""
    names = PHOTOS["train" if split == "train" else "test"]
    pixels = _picture(names[int(rng.integers(len(names)))])
    ph, pw = pixels.shape[:2]
    scale = math.sqrt(rng.uniform(0.1, 1.0))
    w = min(pw, round(scale * math.sqrt(pw * ph * width / height)))
    h = min(ph, round(w * height / width))
    w = min(w, round(h * width / height))
    y0, x0 = int(rng.integers(ph - h + 1)), int(rng.integers(pw - w + 1))
    crop = pixels[y0 : y0 + h, x0 : x0 + w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    image = _resized(crop, width, height)
    mean = image.mean()
    image = mean + rng.uniform(0.6, 1.3) * (image - mean)
    return image * rng.uniform(0.8, 1.2, 3) * rng.uniform(0.7, 1.2)


def _background(rng: np.random.Generator, width: int, height: int, style: str, split: str) -> np.ndarray:
    if style == "clutter":
        return _clutter(rng, width, height)
    if style == "texture":
        return _texture(rng, width, height, split)
    return _photo(rng, width, height, split)


def _article(rng: np.random.Generator, pixels: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """One article resized to about `side` px (longer side) with aspect jitter, in a random tint, gain and
    offset, a fifth of them inverted (dark on light): (colour (h, w, 3), alpha (h, w))."""
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w, h = max(2, round(side * math.sqrt(aspect))), max(2, round(side / math.sqrt(aspect)))
    gray = _resized(pixels, w, h)
    alpha = np.clip(gray / 24.0, 0, 1)  # the articles lie on black: dark = background
    tint = rng.uniform(0.3, 1.0, 3) if rng.random() < 0.6 else np.ones(3)
    colour = gray[..., None] * tint * rng.uniform(0.6, 1.2) + rng.uniform(0, 60)
    if rng.random() < 0.2:
        colour = 255 - colour
    return colour, alpha


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _bounds(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The box (x1, y1, x2, y2, exclusive ends) of a mask's pixels, None when it has none."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return (float(xs.min()), float(ys.min()), xs.max() + 1.0, ys.max() + 1.0)


def _clip(
    x0: int, y0: int, shape: tuple[int, ...], width: int, height: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Where an article of `shape` (h, w) pasted at (x0, y0) lies inside a `width` x `height` image: (the
    image's rows and columns, the article's)."""
    h, w = shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
    return (slice(iy0, iy1), slice(ix0, ix1)), (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))


def _composite(background: np.ndarray, layers: list[tuple[int, int, np.ndarray, np.ndarray]]) -> Image.Image:
    """The background with each layer (x0, y0, colour, alpha) alpha-blended over it in order, as an RGB image."""
    image = background.copy()
    for x0, y0, colour, alpha in layers:
        at, part = _clip(x0, y0, alpha.shape, image.shape[1], image.shape[0])
        a = alpha[part][..., None]
        image[at] = image[at] * (1 - a) + colour[part] * a
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


@dataclass
class Scene:
    """A generated scene: the image, each object's box (N, 4) x1 y1 x2 y2 bounding its visible pixels (alpha
    >= 0.5 and not covered by a later article's), the article labels, the style, and what was drawn (the
    background (H, W, 3) float and the pasted layers (x0, y0, colour, alpha), in order) for checks."""

    image: Image.Image
    boxes: np.ndarray
    labels: list[int]
    style: str
    background: np.ndarray
    layers: list[tuple[int, int, np.ndarray, np.ndarray]]


def make_scene(
    rng: np.random.Generator,
    articles: FashionMNIST,
    style: str = "clutter",
    split: str = "train",
    max_objects: int = 6,
    max_overlap: float = 0.3,
    min_visible: float = 0.5,
) -> Scene:
    """One scene of 300-500 x 300-375 px in `style` (backgrounds of `split`'s pictures) with 1 to `max_objects`
    articles from about 20 px to 90% of the shorter side. An article may be cut by the border or covered by
    later ones as long as `min_visible` of its pixels stay in sight; the visible boxes overlap by at most IoU
    `max_overlap`."""
    if style not in STYLES:
        raise ValueError(f"scene style must be one of {', '.join(STYLES)}, not {style!r}")
    width, height = int(rng.integers(300, 501)), int(rng.integers(300, 376))
    background = _background(rng, width, height, style, split)
    owner = np.full((height, width), -1, np.int16)  # which article each pixel shows, -1 = background
    sizes: list[int] = []  # each article's pixel count, cut-off and covered ones included
    boxes: list[tuple[float, ...]] = []
    labels: list[int] = []
    layers: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            side = math.exp(rng.uniform(math.log(20), math.log(0.9 * min(width, height))))
            index = int(rng.integers(len(articles)))
            colour, alpha = _article(rng, articles.images[index], side)
            h, w = alpha.shape
            x0, y0 = int(rng.integers(-w // 3, width - 2 * w // 3)), int(rng.integers(-h // 3, height - 2 * h // 3))
            solid = alpha >= 0.5
            size = int(solid.sum())
            if size == 0:
                continue
            at, part = _clip(x0, y0, alpha.shape, width, height)
            shown = owner.copy()
            shown[at][solid[part]] = len(boxes)
            region = (at[1].start, at[0].start, at[1].stop, at[0].stop)
            found = [  # only the boxes that the new article overlaps can change
                _bounds(shown == k) if k == len(boxes) or _iou(boxes[k], region) > 0 else boxes[k]
                for k in range(len(boxes) + 1)
            ]
            counts = np.bincount(shown[shown >= 0].ravel(), minlength=len(boxes) + 1)
            enough = all(counts[k] >= min_visible * s for k, s in enumerate([*sizes, size]))
            kept = [b for b in found if b is not None]
            if (
                not enough
                or len(kept) < len(found)
                or min(min(b[2] - b[0], b[3] - b[1]) for b in kept) < 6
                or any(_iou(a, b) > max_overlap for i, a in enumerate(kept) for b in kept[i + 1 :])
            ):
                continue
            owner, boxes = shown, kept
            sizes.append(size)
            labels.append(int(articles.targets[index]))
            layers.append((x0, y0, colour, alpha))
            break
    image = _composite(background, layers)
    return Scene(image, np.asarray(boxes, np.float32).reshape(-1, 4), labels, style, background, layers)


def write_scenes(
    out: str | os.PathLike,
    split: str,
    count: int,
    seed: int = 0,
    root: str | None = None,
    styles: tuple[str, ...] | list[str] = STYLES,
    progress: bool = True,
) -> Path:
    """`count` scenes of Fashion-MNIST's `split` articles into `out` in VOC layout (JPEGImages/, Annotations/,
    ImageSets/Main/<split>.txt, classes.txt), the `styles` in turn (each XML names its scene's <style>). Train
    scenes use train articles and pictures only, test scenes test ones."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, not {count}")
    unknown = sorted(set(styles) - set(STYLES))
    if unknown or not styles:
        raise ValueError(f"--style must name some of {', '.join(STYLES)}, not {', '.join(unknown) or 'none'}")
    articles = FashionMNIST(root, split)
    out = Path(out)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in articles.classes))
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    ids = []
    for i in tqdm(range(count), desc=f"{split} scenes", unit="scene", disable=not progress):
        scene = make_scene(rng, articles, styles[i % len(styles)], split)
        ident = f"{split}_{seed}_{i:06d}"
        scene.image.save(out / "JPEGImages" / f"{ident}.jpg", quality=92)
        annotation = Annotation(
            f"{ident}.jpg",
            scene.image.width,
            scene.image.height,
            scene.boxes,
            [articles.classes[k] for k in scene.labels],
            np.zeros(len(scene.labels), bool),
            scene.style,
        )
        write_xml(annotation, out / "Annotations" / f"{ident}.xml")
        ids.append(ident)
    (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return out
