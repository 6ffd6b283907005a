"""Fitting what R-CNN adds on top of a region classifier, on a VOC-layout split's proposals: the per-class
SVMs (`fit_svm`, `googlenet detect fit-svm`) and the bounding-box regressors (`fit_bbox`, `googlenet detect
fit-bbox`); features come from the one window -> features path (`RegionEnsemble.features`), the maths from
svm.py and bbox.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou
from tqdm import tqdm

from googlenet.data.detection import VOCDetection
from googlenet.data.images import image_tensor
from googlenet.detect import bbox, svm
from googlenet.detect.bbox import encode
from googlenet.detect.proposals import DetectionData, dataset_proposals, merge_sources
from googlenet.detect.regions import RegionEnsemble, fitted_path
from googlenet.evaluate.driver import resolve_device


@torch.inference_mode()
def collect_svm(
    ensemble: RegionEnsemble, data: VOCDetection, proposals: list[np.ndarray], images: list[int], progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pooled features of every image's ground-truth boxes, and of every proposal of the `images`, by the one
    classifier of `ensemble`: (truth features (T, D), their classes (T,), proposal features
    (P, D), each proposal's highest IoU with an object of each class (P, K))."""
    classes = len(ensemble.classes)
    chosen = set(images)
    truths, labels, found, overlaps = [], [], [], []
    for k in tqdm(range(len(data)), desc="svm features", unit="img", disable=not progress):
        annotation = data.annotations[k]
        boxes = np.asarray(proposals[k], np.float32).reshape(-1, 4) if k in chosen else np.zeros((0, 4), np.float32)
        windows = np.concatenate([annotation.boxes.astype(np.float32), boxes])
        if not len(windows):
            continue
        pooled = ensemble.features(image_tensor(data.image_path(k)), windows)[0]
        n, kinds = len(annotation.boxes), torch.as_tensor(data.labels(k))
        truths.append(pooled[:n])
        labels.append(kinds)
        if len(boxes):
            found.append(pooled[n:])
            best = torch.zeros(len(boxes), classes)
            if n:
                iou = box_iou(torch.as_tensor(boxes), torch.as_tensor(annotation.boxes, dtype=torch.float32))
                for c in kinds.unique().tolist():
                    best[:, c] = iou[:, kinds == c].max(dim=1).values
            overlaps.append(best)
    if not found:
        raise ValueError("no proposals in the chosen images: nothing to mine negatives from")
    return torch.cat(truths), torch.cat(labels), torch.cat(found), torch.cat(overlaps)


def fit_svm(
    checkpoint: str,
    data: DetectionData,
    proposals: str | None = None,
    images: int = 400,
    c: float = 1e-3,
    rounds: int = 3,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """`googlenet detect fit-svm`: the region classifier `checkpoint`'s SVMs, fitted on a VOC-layout split
    (positives: every image's objects; negatives: the proposals (`proposals`; default: the method it was trained
    on) of `images` images drawn at random, 0 = all) and written beside it. Returns the report."""
    data.check()
    if images < 0 or c <= 0 or rounds < 0:
        raise ValueError("--images must be >= 0, --c > 0 and --rounds >= 0")
    ensemble = RegionEnsemble.load([checkpoint], resolve_device(device))
    method = proposals or ensemble.head.proposals
    dataset = data.load().matched_to(ensemble.classes)
    boxes, _ = merge_sources(dataset_proposals(dataset, method, data.cache, data.workers, None, progress))
    count = len(dataset) if not images or images >= len(dataset) else images
    chosen = sorted(np.random.default_rng(seed).permutation(len(dataset))[:count].tolist())
    truths, labels, found, overlaps = collect_svm(ensemble, dataset, boxes, chosen, progress)
    svms, report = svm.fit(truths, labels, found, overlaps, c, rounds, progress)
    path = svm.save(svms, fitted_path(checkpoint, "svm"), report)
    per_class = report.pop("classes")
    return {
        **report,
        "path": str(path),
        "proposals": method,
        "images": len(dataset),
        "negative_images": count,
        "positives": len(truths),
        "proposal_windows": len(found),
        "classes": {ensemble.classes[k]: part for k, part in per_class.items()},
    }


@torch.inference_mode()
def collect_bbox(
    ensemble: RegionEnsemble,
    data: VOCDetection,
    proposals: list[np.ndarray],
    iou: float = 0.6,
    max_windows: int = 20000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (of the one classifier of `ensemble`), targets and class of proposals with IoU >= `iou` to an
    object (at most `max_windows`, drawn at random over the dataset)."""
    picks = []
    for k, (found, annotation) in enumerate(zip(proposals, data.annotations, strict=True)):
        if len(found) and len(annotation.boxes):
            overlaps = box_iou(torch.as_tensor(found, dtype=torch.float32), torch.as_tensor(annotation.boxes))
            best, which = overlaps.max(dim=1)
            for i in torch.nonzero(best >= iou).flatten().tolist():
                picks.append((k, i, int(which[i])))
    rng = np.random.default_rng(seed)
    if len(picks) > max_windows:
        picks = [picks[i] for i in sorted(rng.choice(len(picks), max_windows, replace=False))]
    xs, ys, cs = [], [], []
    by_image: dict[int, list[tuple[int, int]]] = {}
    for k, i, j in picks:
        by_image.setdefault(k, []).append((i, j))
    for k, pairs in tqdm(by_image.items(), desc="bbox features", unit="img", disable=not progress):
        boxes = torch.as_tensor(proposals[k][[i for i, _ in pairs]], dtype=torch.float32)
        truths = torch.as_tensor(data.annotations[k].boxes[[j for _, j in pairs]], dtype=torch.float32)
        xs.append(ensemble.features(image_tensor(data.image_path(k)), boxes.numpy())[0])
        ys.append(encode(boxes, truths))
        cs.append(torch.as_tensor(data.labels(k)[[j for _, j in pairs]]))
    if not xs:
        raise ValueError(f"no proposal overlaps an object by IoU >= {iou}: nothing to fit the regression on")
    return torch.cat(xs).double(), torch.cat(ys).double(), torch.cat(cs)


def fit_bbox(
    checkpoint: str,
    data: DetectionData,
    proposals: str | None = None,
    iou: float = 0.6,
    max_windows: int = 20000,
    progress: bool = True,
) -> dict[str, object]:
    """`googlenet detect fit-bbox`: the region classifier `checkpoint`'s regressors, fitted on a VOC-layout
    split's `proposals` (default: the method it was trained on) and written beside it. Returns the report."""
    data.check()
    if max_windows < 1 or not 0 < iou < 1:
        raise ValueError("--max-windows must be >= 1 and --iou in (0, 1)")
    ensemble = RegionEnsemble.load([checkpoint], optimize=False)  # the eager network, as it was trained
    method = proposals or ensemble.head.proposals
    dataset = data.load().matched_to(ensemble.classes)
    boxes, _ = merge_sources(dataset_proposals(dataset, method, data.cache, data.workers, None, progress))
    x, y, classes = collect_bbox(ensemble, dataset, boxes, iou, max_windows, progress=progress)
    weights, report = bbox.fit(x, y, classes, len(ensemble.classes))
    path = bbox.save(weights, fitted_path(checkpoint, "bbox"), report)
    return {**report, "path": str(path), "proposals": method, "images": len(dataset), "classes": len(ensemble.classes)}
