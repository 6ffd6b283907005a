"""The Inception region classifier's inputs and weights: R-CNN's region warp and window labels (what it sees of
each proposal), and loading its .safetensors file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou, roi_align
from torchvision.transforms import v2

from googlenet.model import GoogLeNet, RegionHead, load_model


def region_head(model: GoogLeNet) -> RegionHead:
    """A region classifier's settings (context, proposals, foreground IoU) from its weights' record."""
    head = model.meta.head
    if not isinstance(head, RegionHead):
        raise ValueError(f"{model.meta.variant} weights of task {model.meta.task!r} are no region classifier")
    return head


def load_regions(path: str | os.PathLike) -> GoogLeNet:
    """A region classifier from its .safetensors file (as `googlenet detect train` writes it), without its
    auxiliary heads."""
    return load_model(path, task="regions", aux=False).eval()


def fitted_path(checkpoint: str | os.PathLike, kind: str) -> Path:
    """Where a fit command (fit-bbox: `bbox`, fit-svm: `svm`) writes what it fits for a region classifier's
    weights file: beside it, `NAME.<kind>.safetensors`."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.{kind}.safetensors")


def context_boxes(boxes: torch.Tensor, size: int, padding: int = 16) -> torch.Tensor:
    """Each box grown about its centre so that, once warped to `size` x `size`, `padding` pixels of context
    surround the original box on every side (R-CNN's context padding; 16 px at 227 in the paper)."""
    if not 0 <= 2 * padding < size:
        raise ValueError(f"context padding {padding} does not fit a {size} px input")
    grow = size / (size - 2 * padding)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * grow
    return torch.cat([centre - half, centre + half], dim=1)


def warp_regions(image: torch.Tensor, boxes: torch.Tensor, size: int, padding: int = 16) -> torch.Tensor:
    """Cut every box, with context, out of one normalised image (C, H, W) and warp it anisotropically to
    (N, C, size, size), batched (torchvision's roi_align, bilinear with adaptive sampling). Parts of a grown box
    outside the image read as zero, which in a mean-subtracted image is the mean, as R-CNN fills them."""
    if len(boxes) == 0:
        return image.new_zeros((0, image.shape[0], size, size))
    grown = context_boxes(boxes.to(image.dtype), size, padding)
    rois = torch.cat([grown.new_zeros(len(grown), 1), grown], dim=1)
    return roi_align(image[None], rois, (size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True)


def label_windows(
    windows: np.ndarray, truths: np.ndarray, truth_labels: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """R-CNN's fine-tuning labels: a window with IoU >= `threshold` to some object takes the class of the
    object it overlaps most (1 ... K); every other window is background (0)."""
    labels = np.zeros(len(windows), np.int64)
    if len(windows) and len(truths):
        overlaps = box_iou(torch.as_tensor(windows, dtype=torch.float32), torch.as_tensor(truths, dtype=torch.float32))
        best, which = overlaps.max(dim=1)
        hit = (best >= threshold).numpy()
        labels[hit] = np.asarray(truth_labels)[which.numpy()[hit]] + 1
    return labels


def sampled_part(boxes: torch.Tensor, size: int, context: int, height: int, width: int) -> tuple[slice, slice]:
    """The rows and columns of a (height, width) image that `warp_regions` of `boxes` reads: the grown boxes' extent
    with the bilinear neighbours (roi_align's aligned samples lie in [x1 - 0.5, x2 - 0.5]) and a pixel to spare.
    Warping the part, with the boxes moved by its corner, reads the same pixels as warping the whole image."""
    if len(boxes) == 0:
        return slice(0, height), slice(0, width)
    grown = context_boxes(boxes.float(), size, context)
    low = (grown[:, :2].min(dim=0).values - 0.5).floor() - 1
    high = (grown[:, 2:].max(dim=0).values - 0.5).floor() + 3
    (x0, y0), (x1, y1) = low.long().tolist(), high.long().tolist()
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
    return slice(y0, y1), slice(x0, x1)


def warp_pixels(
    pixels: torch.Tensor, boxes: torch.Tensor, size: int, context: int, mean: tuple[float, ...]
) -> torch.Tensor:
    """`warp_regions` of an image in [0, 1] (float, or uint8 in 0 ... 255): the regions in [0, 1], their outside
    filled with the mean pixel. Only the part of the image the boxes sample is converted and read."""
    rows, cols = sampled_part(boxes, size, context, pixels.shape[1], pixels.shape[2])
    part = pixels[:, rows, cols]
    if not part.is_floating_point():
        part = v2.functional.to_dtype(part, torch.float32, scale=True)  # as image_tensor converts
    if rows.start or cols.start:
        boxes = boxes - torch.tensor([cols.start, rows.start] * 2, dtype=boxes.dtype)
    shift = torch.as_tensor(mean, dtype=part.dtype)[:, None, None]
    return (warp_regions(part - shift, boxes, size, context) + shift).clamp(0, 1)
