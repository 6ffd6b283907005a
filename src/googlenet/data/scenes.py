"""Detection scenes built from real photographed objects: Fashion-MNIST articles pasted at widely varying
scales onto cluttered backgrounds, written as JPEG + VOC XML (so the detection reader serves them and real
datasets alike). ILSVRC's detection data cannot be downloaded here; these stand in for it."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from googlenet.data.detection import Annotation, write_xml
from googlenet.data.fashion_mnist import FashionMNIST


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Clutter: a colour gradient, a sinusoidal texture, noise and random filled shapes (H, W, 3) float."""
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


def _article(rng: np.random.Generator, pixels: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """One article resized to about `side` px (longer side) with aspect jitter: (colour (h, w, 3), alpha (h, w))."""
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w, h = max(2, round(side * math.sqrt(aspect))), max(2, round(side / math.sqrt(aspect)))
    # Pillow sets Image.BILINEAR at import time, unseen by its type hints; their Image.Resampling.BILINEAR needs
    # Pillow 9.1, newer than the pillow>=8.4 this package supports.
    gray = np.asarray(Image.fromarray(pixels).resize((w, h), Image.BILINEAR), np.float32)  # type: ignore[attr-defined]
    alpha = np.clip(gray / 24.0, 0, 1)  # the articles lie on black: dark = background
    tint = rng.uniform(0.4, 1.0, 3) if rng.random() < 0.5 else np.ones(3)
    colour = gray[..., None] * tint + rng.uniform(0, 60)
    return colour, alpha


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def make_scene(
    rng: np.random.Generator, articles: FashionMNIST, max_objects: int = 6, max_overlap: float = 0.3
) -> tuple[Image.Image, np.ndarray, list[int]]:
    """One scene: (RGB image, tight boxes (N, 4) x1 y1 x2 y2, article labels). Objects may overlap up to
    IoU `max_overlap`; each box bounds the visible-or-not pixels of its article (alpha >= 0.5)."""
    width, height = int(rng.integers(300, 501)), int(rng.integers(300, 376))
    image = _background(rng, width, height)
    boxes: list[tuple[float, ...]] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            side = math.exp(rng.uniform(math.log(20), math.log(min(width, height) / 2)))
            index = int(rng.integers(len(articles)))
            colour, alpha = _article(rng, articles.images[index], side)
            h, w = alpha.shape
            if w >= width or h >= height:
                continue
            x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            ys, xs = np.nonzero(alpha >= 0.5)
            if len(xs) == 0:
                continue
            box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1.0, y0 + ys.max() + 1.0)
            if all(_iou(box, other) <= max_overlap for other in boxes):
                region = image[y0 : y0 + h, x0 : x0 + w]
                region[:] = region * (1 - alpha[..., None]) + colour * alpha[..., None]
                boxes.append(box)
                labels.append(int(articles.targets[index]))
                break
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), np.asarray(boxes, np.float32), labels


def write_scenes(
    out: str | os.PathLike, split: str, count: int, seed: int = 0, root: str | None = None, progress: bool = True
) -> Path:
    """`count` scenes of Fashion-MNIST's `split` articles into `out` in VOC layout (JPEGImages/, Annotations/,
    ImageSets/Main/<split>.txt, classes.txt). Train scenes use train articles only, test scenes test ones."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, not {count}")
    articles = FashionMNIST(root, split)
    out = Path(out)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in articles.classes))
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    ids = []
    for i in tqdm(range(count), desc=f"{split} scenes", unit="scene", disable=not progress):
        image, boxes, labels = make_scene(rng, articles)
        ident = f"{split}_{seed}_{i:06d}"
        image.save(out / "JPEGImages" / f"{ident}.jpg", quality=92)
        annotation = Annotation(
            f"{ident}.jpg",
            image.width,
            image.height,
            boxes,
            [articles.classes[k] for k in labels],
            np.zeros(len(labels), bool),
        )
        write_xml(annotation, out / "Annotations" / f"{ident}.xml")
        ids.append(ident)
    (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return out
