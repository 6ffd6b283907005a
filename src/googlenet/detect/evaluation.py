"""Detection mean average precision: the ILSVRC metric (devkit eval_detection.m) and PASCAL VOC's 2007
(11-point) and 2010+ (all-point) variants. Boxes are (x1, y1, x2, y2) pixels with exclusive ends, so a
box's width x2 - x1 equals the devkits' inclusive xmax - xmin + 1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

METRICS = ("ilsvrc", "voc2010", "voc2007")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4)."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def ilsvrc_thresholds(truths: np.ndarray) -> np.ndarray:
    """ILSVRC's IoU threshold per ground-truth box: min(0.5, wh / ((w + 10)(h + 10))), lenient on small objects."""
    w, h = truths[:, 2] - truths[:, 0], truths[:, 3] - truths[:, 1]
    return np.minimum(0.5, w * h / ((w + 10) * (h + 10)))


def match_image(
    boxes: np.ndarray, scores: np.ndarray, truths: np.ndarray, difficult: np.ndarray, metric: str
) -> np.ndarray:
    """One image, one class: 1 = true positive, 0 = false positive, -1 = ignored (matched a difficult box,
    VOC only), per detection in the given order (the caller sorts by score).

    ILSVRC: each detection, in descending score, takes the still-unmatched object with the highest IoU at or
    above that object's threshold. VOC: each takes the object with the highest IoU (>= 0.5); if that object
    is already taken the detection is a duplicate, a false positive."""
    outcome = np.zeros(len(boxes), np.int64)
    if len(truths) == 0:
        return outcome
    overlaps = iou_matrix(boxes, truths)
    taken = np.zeros(len(truths), bool)
    order = np.argsort(-scores, kind="stable")
    for i in order:
        if metric == "ilsvrc":
            candidates = np.where(~taken & (overlaps[i] >= ilsvrc_thresholds(truths)), overlaps[i], -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] >= 0:
                taken[best], outcome[i] = True, 1
            continue
        best = int(np.argmax(overlaps[i]))
        if overlaps[i, best] >= 0.5:
            if difficult[best]:
                outcome[i] = -1
            elif not taken[best]:
                taken[best], outcome[i] = True, 1
    return outcome


def average_precision(
    tp: np.ndarray, scores: np.ndarray, positives: int, metric: str
) -> tuple[float, np.ndarray, np.ndarray]:
    """AP from every detection's outcome and score over the dataset: (AP, precision, recall) curves.

    VOC 2007: the mean of the best precision at recall >= 0, 0.1, ..., 1. ILSVRC and VOC 2010+: the area under
    the precision-recall curve with precision made monotone (all-point interpolation)."""
    order = np.argsort(-scores, kind="stable")
    tp = tp[order]
    kept = tp >= 0
    tp = tp[kept].astype(np.float64)
    tps, fps = np.cumsum(tp), np.cumsum(1 - tp)
    recall = tps / max(positives, 1)
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    if positives == 0:
        return float("nan"), precision, recall
    if metric == "voc2007":
        points = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)]
        return float(np.mean(points)), precision, recall
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1])), precision, recall


@dataclass
class DetectionEvaluator:
    """mAP in the reset / process / evaluate style: `add` one image's detections and ground truth at a time
    (`googlenet.detect.detector.DetectionScores.process` does it for the evaluation driver); `evaluate` gives
    AP per class and their mean."""

    classes: list[str]
    metric: str = "ilsvrc"
    _outcomes: list[list[np.ndarray]] = field(default_factory=list, repr=False)
    _scores: list[list[np.ndarray]] = field(default_factory=list, repr=False)
    _positives: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        self.reset()

    def reset(self) -> None:
        self._outcomes = [[] for _ in self.classes]
        self._scores = [[] for _ in self.classes]
        self._positives = np.zeros(len(self.classes), np.int64)

    def add(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        truths: np.ndarray,
        truth_labels: np.ndarray,
        difficult: np.ndarray | None = None,
    ) -> None:
        """One image: detections (boxes, scores, class indices) and its objects (boxes, class indices)."""
        boxes, truths = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(truths, np.float64).reshape(-1, 4)
        scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
        truth_labels = np.asarray(truth_labels, np.int64)
        difficult = (
            np.zeros(len(truths), bool) if difficult is None or self.metric == "ilsvrc" else np.asarray(difficult, bool)
        )
        for c in set(labels.tolist()) | set(truth_labels.tolist()):
            mine, theirs = labels == c, truth_labels == c
            self._positives[c] += int((theirs & ~difficult).sum())
            if mine.any():
                self._outcomes[c].append(
                    match_image(boxes[mine], scores[mine], truths[theirs], difficult[theirs], self.metric)
                )
                self._scores[c].append(scores[mine])

    def evaluate(self) -> dict[str, Any]:
        """`map` (mean over the classes that have objects), `ap` per class name, and the PR curves."""
        ap, curves = {}, {}
        for c, name in enumerate(self.classes):
            tp = np.concatenate(self._outcomes[c]) if self._outcomes[c] else np.zeros(0, np.int64)
            scores = np.concatenate(self._scores[c]) if self._scores[c] else np.zeros(0)
            value, precision, recall = average_precision(tp, scores, int(self._positives[c]), self.metric)
            if not np.isnan(value):
                ap[name] = value
                curves[name] = (precision, recall)
        return {
            "map": float(np.mean(list(ap.values()))) if ap else 0.0,
            "ap": ap,
            "metric": self.metric,
            "curves": curves,
        }
