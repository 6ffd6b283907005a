"""Region proposals (paper section 8): Selective Search (OpenCV contrib) with R-CNN's fast recipe and with the
paper's superpixels twice as large, their recall of ground-truth boxes, and a per-image cache on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou


@dataclass(frozen=True)
class SelectiveSearch:
    """Selective Search settings. `ks` are the graph segmentation's k (superpixel scale; min size = k, as in
    R-CNN), run on each colour space with both of the fast mode's strategies (colour+texture+size+fill and
    texture+size+fill). `opencv` = "fast" / "quality" uses OpenCV's own presets instead. The image is resized
    to `width` px wide first; boxes narrower or lower than `min_side` px are dropped, duplicates removed."""

    ks: tuple[int, ...] = (50, 100)
    sigma: float = 0.8
    colour_spaces: tuple[str, ...] = ("hsv", "lab")
    opencv: str | None = None
    width: int = 500
    min_side: int = 20

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) float32 (x1, y1, x2, y2) in the pixels of `image` (H, W, 3) uint8 RGB."""
        import cv2

        seg = cv2.ximgproc.segmentation
        height, width = image.shape[:2]
        scale = self.width / width if self.width else 1.0
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if scale != 1.0:
            bgr = cv2.resize(bgr, (self.width, max(1, round(height * scale))), interpolation=cv2.INTER_LINEAR)
        search = seg.createSelectiveSearchSegmentation()
        search.setBaseImage(bgr)
        if self.opencv == "fast":
            search.switchToSelectiveSearchFast()
        elif self.opencv == "quality":
            search.switchToSelectiveSearchQuality()
        else:
            search.clearImages()
            codes = {"hsv": cv2.COLOR_BGR2HSV, "lab": cv2.COLOR_BGR2Lab, "rgb": cv2.COLOR_BGR2RGB}
            for space in self.colour_spaces:
                search.addImage(cv2.cvtColor(bgr, codes[space]))
            search.clearGraphSegmentations()
            for k in self.ks:
                search.addGraphSegmentation(seg.createGraphSegmentation(self.sigma, float(k), int(k)))
            search.clearStrategies()
            colour, fill = (
                seg.createSelectiveSearchSegmentationStrategyColor(),
                seg.createSelectiveSearchSegmentationStrategyFill(),
            )
            texture, size = (
                seg.createSelectiveSearchSegmentationStrategyTexture(),
                seg.createSelectiveSearchSegmentationStrategySize(),
            )
            search.addStrategy(seg.createSelectiveSearchSegmentationStrategyMultiple(colour, fill, texture, size))
            search.addStrategy(seg.createSelectiveSearchSegmentationStrategyMultiple(fill, texture, size))
        rects = np.asarray(search.process(), np.float32).reshape(-1, 4)  # (x, y, w, h), small regions first
        keep = (rects[:, 2] >= self.min_side * scale) & (rects[:, 3] >= self.min_side * scale)
        rects = rects[keep]
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / scale
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return unique_boxes(boxes)


def unique_boxes(boxes: np.ndarray) -> np.ndarray:
    """`boxes` without repeats (compared at whole pixels), first occurrence kept, order kept."""
    _, first = np.unique(np.round(boxes).astype(np.int64), axis=0, return_index=True)
    return boxes[np.sort(first)].astype(np.float32)


# R-CNN's fast recipe, and the paper's: "the superpixel size was increased by 2x", i.e. k doubled.
METHODS = {
    "ss": SelectiveSearch(),
    "ss2x": SelectiveSearch(ks=(100, 200)),
    "opencv_fast": SelectiveSearch(opencv="fast"),
    "opencv_quality": SelectiveSearch(opencv="quality"),
}


def recall(proposals: list[np.ndarray], truths: list[np.ndarray], iou: float = 0.5, top: int | None = None) -> float:
    """Fraction of ground-truth boxes covered (IoU >= `iou`) by some proposal of their image (the first `top`)."""
    covered = total = 0
    for boxes, gt in zip(proposals, truths, strict=True):
        total += len(gt)
        boxes = boxes[:top]
        if len(gt) and len(boxes):
            best = box_iou(torch.as_tensor(gt), torch.as_tensor(boxes)).max(dim=1).values
            covered += int((best >= iou).sum())
    return covered / max(total, 1)


class ProposalCache:
    """Proposals per image id in `folder/<method>/<id>.npy`, so training never recomputes them."""

    def __init__(self, folder: str | os.PathLike, method: str) -> None:
        self.folder = Path(folder) / method
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, ident: str) -> Path:
        return self.folder / f"{ident}.npy"

    def get(self, ident: str) -> np.ndarray | None:
        path = self.path(ident)
        return np.load(path) if path.is_file() else None

    def put(self, ident: str, boxes: np.ndarray) -> None:
        tmp = self.path(ident).with_suffix(".tmp.npy")
        np.save(tmp, boxes.astype(np.float32))
        tmp.replace(self.path(ident))
