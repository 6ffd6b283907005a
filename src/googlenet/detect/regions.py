"""The Inception region classifier's inputs and weights: R-CNN's region warp and window labels (what it sees of
each proposal), and loading its .safetensors file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou, roi_align
from torchvision.transforms import v2

from googlenet.detect.bbox import apply as apply_regression
from googlenet.detect.bbox import load as load_regression
from googlenet.detect.svm import load as load_svms
from googlenet.detect.svm import scores as svm_scores
from googlenet.model import GoogLeNet, RegionHead, load_model
from googlenet.model.inference import optimize_for_inference
from googlenet.model.weights import weights_file


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
    weights file (or a training run's folder): beside it, `NAME.<kind>.safetensors`."""
    checkpoint = weights_file(checkpoint)
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


def features(model: GoogLeNet, windows: torch.Tensor) -> torch.Tensor:
    """The pooled (pre-classifier) features of normalised windows."""
    return model.forward_head(model.forward_features(windows), pre_logits=True).float()


def _beside(path: Path, what: str, command: str, read: Callable[[Path], Any]) -> Any:
    """What a fit command wrote beside a region classifier's weights, read; a FileNotFoundError naming the
    command when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"no {what} {path}: fit them with googlenet detect {command}")
    return read(path)


class RegionEnsemble:
    """One or more region classifiers that share input size, context, scaling and classes; `score` averages
    their softmax over every window of an image (and, with `bbox_regression`, their regressed box offsets)."""

    def __init__(
        self,
        models: list[GoogLeNet],
        device: str | torch.device = "cpu",
        batch: int = 256,
        regressors: list[torch.Tensor] | None = None,
        optimize: bool = True,
        svms: list[dict[str, torch.Tensor]] | None = None,
        flip: bool = False,
    ) -> None:
        if not models:
            raise ValueError("at least one region classifier is needed")
        first = models[0].meta
        for m in models[1:]:
            same = (m.meta.input_size, region_head(m).context, m.meta.class_names, tuple(m.meta.mean))
            if same != (first.input_size, region_head(models[0]).context, first.class_names, tuple(first.mean)):
                raise ValueError("the region classifiers differ in input size, context, classes or mean")
        if regressors is not None and len(regressors) != len(models):
            raise ValueError("bounding-box regression needs every classifier's regressors: googlenet detect fit-bbox")
        if svms is not None and len(svms) != len(models):
            raise ValueError("SVM scoring needs every classifier's SVMs: googlenet detect fit-svm")
        # The inference model (BatchNorm folded, 1x1s fused, channels_last), or with optimize=False the eager
        # model in channels_last (about 1.7x faster convolutions on this CPU); same outputs to float rounding.
        prepared = [optimize_for_inference(m) if optimize else m.to(memory_format=torch.channels_last) for m in models]
        self.models = [m.eval().to(device) for m in prepared]
        self.meta, self.device, self.batch, self.regressors = first, torch.device(device), batch, regressors
        self.svms, self.flip = svms, flip
        self.head = region_head(models[0])  # context, proposal method, foreground IoU (the same for all)
        self.context = self.head.context
        if not first.class_names:
            raise ValueError("a region classifier's record must name its classes (background first)")
        self.classes = list(first.class_names[1:])  # background is class 0
        mean, std = torch.tensor(first.mean), torch.tensor(first.std)
        self.mean, self.std = mean[:, None, None], std[:, None, None]

    @classmethod
    def load(
        cls,
        paths: list[str],
        device: str | torch.device = "cpu",
        bbox_regression: bool = False,
        optimize: bool = True,
        svm: bool = False,
        flip: bool = False,
    ) -> RegionEnsemble:
        """The region classifiers in `paths`, with their regressors (written by fit-bbox beside them) when
        `bbox_regression` and their SVMs (fit-svm) when `svm`; `flip` scores each window and its mirror."""
        models = [load_regions(p) for p in paths]
        regressors = svms = None
        if bbox_regression:
            regressors = [_beside(fitted_path(p, "bbox"), "regressors", "fit-bbox", load_regression) for p in paths]
        if svm:
            svms = [_beside(fitted_path(p, "svm"), "SVMs", "fit-svm", load_svms) for p in paths]
        return cls(models, device, regressors=regressors, optimize=optimize, svms=svms, flip=flip)

    def _windows(self, pixels: torch.Tensor, boxes: np.ndarray) -> Iterator[tuple[slice, torch.Tensor]]:
        """The boxes' normalised windows on the device, `batch` at a time, with their place among the boxes."""
        m = self.meta
        boxes_t = torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)
        for start in range(0, len(boxes_t), self.batch):
            chunk = boxes_t[start : start + self.batch]
            windows = warp_pixels(pixels, chunk, m.input_size, self.context, m.mean)
            windows = ((windows - self.mean) / self.std).to(self.device, memory_format=torch.channels_last)
            yield slice(start, start + len(chunk)), windows

    @torch.inference_mode()
    def features(self, pixels: torch.Tensor, boxes: np.ndarray) -> list[torch.Tensor]:
        """Each model's pooled (pre-classifier) features (N, D) of every box of one image in [0, 1]."""
        parts: list[list[torch.Tensor]] = [[] for _ in self.models]
        for _, windows in self._windows(pixels, boxes):
            for k, model in enumerate(self.models):
                parts[k].append(features(model, windows).cpu())
        return [torch.cat(p) if p else torch.zeros(0, 0) for p in parts]

    @torch.inference_mode()
    def score(self, pixels: torch.Tensor, boxes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Softmax (N, K + 1) of every box of one image in [0, 1] (3, H, W), averaged over the models (with SVMs,
        the object columns 1 ... K are the SVMs' margins through a sigmoid instead; with `flip` the mean of the
        window's and its mirror's), and with bounding-box regression their mean offsets (N, K, 4) per object class
        (of the windows as they are), else None."""
        m = self.meta
        total = torch.zeros(len(boxes), m.num_classes)
        deltas = torch.zeros(len(boxes), m.num_classes - 1, 4) if self.regressors is not None else None
        for where, windows in self._windows(pixels, boxes):
            for k, model in enumerate(self.models):
                pooled = features(model, windows)
                part = self._scores(k, pooled)
                if self.flip:  # the paper's mirrored crops (section 7): the window's mirror image scored too
                    part = (part + self._scores(k, features(model, windows.flip(-1)))) / 2
                total[where] += part
                if deltas is not None and self.regressors is not None:
                    deltas[where] += apply_regression(self.regressors[k], pooled.cpu())
        if deltas is not None:
            deltas /= len(self.models)
        return total / len(self.models), deltas

    def _scores(self, k: int, pooled: torch.Tensor) -> torch.Tensor:
        """Model k's scores (N, K + 1) of pooled features: its softmax, or its SVMs' margins through a sigmoid."""
        part = self.models[k].linear(pooled).float().softmax(dim=1).cpu()
        if self.svms is not None:
            part[:, 1:] = svm_scores(self.svms[k], pooled.cpu()).sigmoid()
        return part

    def probs(self, pixels: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        return self.score(pixels, boxes)[0]
