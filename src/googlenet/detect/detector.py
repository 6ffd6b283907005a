"""The detector of section 8 at test time: proposals, every one warped and scored by the region classifier
(its softmax, or R-CNN's per-class SVMs on its features; an ensemble averages the classifiers' scores, like the
paper's six ConvNets), per-class greedy NMS at IoU 0.3, a cap of detections per image; ILSVRC mAP over a
dataset; pictures with the boxes drawn."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms, clip_boxes_to_image

from googlenet.data.detection import VOCDetection
from googlenet.data.images import image_tensor, load_image
from googlenet.detect.bbox import decode
from googlenet.detect.evaluation import DetectionEvaluator
from googlenet.detect.proposals import DetectionData, Proposer, merge_sources, propose_sources, proposer_for
from googlenet.detect.regions import RegionEnsemble
from googlenet.evaluate.driver import inference_on_dataset, progress_bar, resolve_device


@dataclass
class Detections:
    """One image's detections: boxes (N, 4) x1 y1 x2 y2 pixels, scores (N,), labels (N,) object class indices
    (0 ... K-1, background excluded), best first."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    def above(self, threshold: float) -> Detections:
        """The detections scoring at least `threshold` (same timings)."""
        kept = self.scores >= threshold
        return Detections(self.boxes[kept], self.scores[kept], self.labels[kept], self.seconds)

    def to_json(self, classes: list[str]) -> list[dict[str, Any]]:
        return [
            {"box": [round(float(v), 1) for v in b], "class": classes[int(c)], "score": round(float(s), 4)}
            for b, s, c in zip(self.boxes, self.scores, self.labels, strict=True)
        ]


def select(
    boxes: np.ndarray,
    probs: torch.Tensor,
    nms: float = 0.3,
    max_detections: int = 100,
    min_score: float = 0.01,
    deltas: torch.Tensor | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class greedy NMS at IoU `nms` (torchvision's batched_nms) over every (box, object class) whose
    probability is at least `min_score`; the best `max_detections` overall. With `deltas` (N, K, 4) each box is
    first moved by its class's regression and clipped to the image (`size` = (height, width)). Returns
    (boxes, scores, labels)."""
    boxes_t = torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)
    scores = probs[:, 1:]  # background (class 0) is never detected
    which, label = torch.nonzero(scores >= min_score, as_tuple=True)
    candidate_boxes, candidate_scores = boxes_t[which], scores[which, label]
    if deltas is not None:
        candidate_boxes = decode(candidate_boxes, deltas[which, label].float())
        if size is not None:
            candidate_boxes = clip_boxes_to_image(candidate_boxes, size)
    keep = batched_nms(candidate_boxes, candidate_scores, label, nms)[:max_detections]
    return candidate_boxes[keep].numpy(), candidate_scores[keep].numpy(), label[keep].numpy()


@dataclass(frozen=True)
class DetectorSpec:
    """Everything that makes a detector: the region classifier(s) (several = an ensemble averaging their scores),
    the proposal method (default: the paper's with a `multibox` model, else ss2x) and MultiBox's tiling, the
    per-class NMS IoU and the detections kept per image, the optional R-CNN scorers (box regression, SVMs), the
    mirrored windows, the device and the inference form. The CLI builds it once from its options; a Python user
    builds the same object; `Detector.load` takes it whole."""

    checkpoints: tuple[str, ...]
    proposals: str | None = None
    multibox: str | None = None
    tiles: int | None = None
    nms: float = 0.3
    max_detections: int = 100
    bbox_regression: bool = False
    svm: bool = False
    flip: bool = False
    device: str = "auto"
    optimize: bool = True

    @property
    def method(self) -> str:
        """The proposal method this spec resolves to."""
        return self.proposals or ("paper" if self.multibox else "ss2x")

    def check(self) -> None:
        """Impossible values are a one-line ValueError, before anything is loaded."""
        if not self.checkpoints:
            raise ValueError("a detector needs at least one region classifier (--checkpoint)")
        if not 0 < self.nms <= 1 or self.max_detections < 1:
            raise ValueError("--nms must be in (0, 1] and --max-detections >= 1")
        if self.tiles is not None and self.tiles < 1:
            raise ValueError("--tiles must be >= 1")


class Detector:
    """Proposals -> region softmax -> per-class NMS. `proposer(image)` gives one decoded RGB image's proposals
    as (N, 4) pixel boxes (a `googlenet.detect.proposals.Proposer`)."""

    def __init__(
        self,
        ensemble: RegionEnsemble,
        proposer: Proposer,
        nms: float = 0.3,
        max_detections: int = 100,
        method: str | None = None,
    ) -> None:
        self.ensemble, self.proposer, self.nms, self.max_detections = ensemble, proposer, nms, max_detections
        self.method = method  # the proposal method's name, where it has one (see `load`)

    @classmethod
    def load(cls, spec: DetectorSpec) -> Detector:
        """The detector `spec` describes; its proposal method is `detector.method`."""
        spec.check()
        ensemble = RegionEnsemble.load(
            list(spec.checkpoints),
            resolve_device(spec.device),
            bbox_regression=spec.bbox_regression,
            optimize=spec.optimize,
            svm=spec.svm,
            flip=spec.flip,
        )
        proposer = proposer_for(spec.method, spec.multibox, spec.tiles)
        return cls(ensemble, proposer, spec.nms, spec.max_detections, spec.method)

    @property
    def classes(self) -> list[str]:
        return self.ensemble.classes

    def detect(self, image: Image.Image | str | os.PathLike, proposals: np.ndarray | None = None) -> Detections:
        """One image's detections: a decoded RGB image, or a file, decoded here once (timed as `load`). With
        `proposals` given, they are used instead of the proposer's."""
        began = time.perf_counter()
        image = image if isinstance(image, Image.Image) else load_image(image)
        pixels = image_tensor(image)
        loaded = time.perf_counter()
        if proposals is None:
            proposals = self.proposer(image)
        proposed = time.perf_counter()
        probs, deltas = self.ensemble.score(pixels, proposals)
        classified = time.perf_counter()
        size = (int(pixels.shape[1]), int(pixels.shape[2]))
        boxes, scores, labels = select(proposals, probs, self.nms, self.max_detections, deltas=deltas, size=size)
        done = time.perf_counter()
        seconds = {
            "load": loaded - began,
            "proposals": proposed - loaded,
            "classify": classified - proposed,
            "nms": done - classified,
            "total": done - began,
        }
        return Detections(boxes, scores, labels, seconds)


class DetectionScores(DetectionEvaluator):
    """mAP of whole images through the evaluation driver: inputs are (index, annotation, labels) of an image,
    outputs its `Detections`, whose timings are kept too; images with a scene <style> are also scored per style."""

    def reset(self) -> None:
        super().reset()
        self.seconds: list[float] = []
        self.styles: dict[str, DetectionEvaluator] = {}

    def process(self, inputs: tuple[int, Any, np.ndarray], outputs: Detections) -> None:
        _, annotation, labels = inputs
        found = (outputs.boxes, outputs.scores, outputs.labels, annotation.boxes, labels, annotation.difficult)
        self.add(*found)
        if annotation.style:
            self.styles.setdefault(annotation.style, DetectionEvaluator(self.classes, self.metric)).add(*found)
        self.seconds.append(outputs.seconds["total"])

    def evaluate(self) -> dict[str, Any]:
        """As `DetectionEvaluator.evaluate`, with `styles`: each style's mAP and AP per class (when there are)."""
        results = super().evaluate()
        if self.styles:
            results["styles"] = {}
            for style, scores in sorted(self.styles.items()):
                found = scores.evaluate()
                results["styles"][style] = {"map": found["map"], "ap": found["ap"]}
        return results


def evaluate_dataset(
    detector: Detector, data: VOCDetection, proposals: list[np.ndarray], metric: str = "ilsvrc", progress: bool = True
) -> tuple[dict[str, Any], list[float]]:
    """Detect every image of `data` on its (cached) `proposals` and score the detections with `metric`:
    (the evaluator's record, each image's seconds of detection)."""
    data = data.matched_to(detector.classes)
    collected = DetectionScores(detector.classes, metric)
    images = ((k, data.annotations[k], data.labels(k)) for k in range(len(data)))

    def run(inputs: tuple[int, Any, np.ndarray]) -> Detections:
        return detector.detect(data.image_path(inputs[0]), proposals[inputs[0]])

    with progress_bar(len(data), "detect", progress) as bar:
        results, _ = inference_on_dataset(run, images, collected, lambda _: 1, bar)
    return results, collected.seconds


def evaluate_detector(
    spec: DetectorSpec, data: DetectionData, metric: str = "ilsvrc", progress: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`googlenet detect evaluate`: the mAP and per-class AP over a VOC-layout dataset, with timings, of the
    detector `spec` describes (the record), and the evaluator's results with the precision-recall curves (for
    `plot_precision_recall`)."""
    data.check()
    found_by = Detector.load(spec)
    dataset = data.load()
    started = time.perf_counter()
    boxes, seconds = merge_sources(propose_sources(dataset, found_by.proposer, data.cache, data.workers, progress))
    results, classify = evaluate_dataset(found_by, dataset, boxes, metric, progress)
    images = max(len(dataset), 1)
    record = {
        "map": results["map"],
        "ap": results["ap"],
        **({"styles": results["styles"]} if "styles" in results else {}),
        "metric": metric,
        "images": len(dataset),
        "proposals": found_by.method,
        "proposals_per_image": sum(len(b) for b in boxes) / max(len(boxes), 1),
        "models": len(found_by.ensemble.models),
        "bbox_regression": found_by.ensemble.regressors is not None,
        "svm": found_by.ensemble.svms is not None,
        "flip": found_by.ensemble.flip,
        "seconds_per_image": (sum(seconds) + sum(classify)) / images,
        "classify_seconds_per_image": sum(classify) / images,
        "proposal_seconds_per_image": sum(seconds) / images,
        "wall_seconds": time.perf_counter() - started,
        "checkpoints": list(spec.checkpoints),
    }
    return record, results


def detect_images(
    spec: DetectorSpec, images: list[str], threshold: float = 0.5, out: str | None = None
) -> list[dict[str, Any]]:
    """`googlenet detect predict`: each image's detections scoring at least `threshold` (listed and, with `out`,
    drawn: the one place that decides what is shown), with timings, by the detector `spec` describes; with
    `out`, each image saved there as PNG with its boxes drawn (path under `drawn`). The arguments are checked
    before anything is loaded."""
    if not 0 <= threshold <= 1:
        raise ValueError("--threshold must be in [0, 1]")
    spec.check()
    for path in images:
        if not Path(path).is_file():
            raise FileNotFoundError(f"image not found: {path}")
    found_by = Detector.load(spec)
    records = []
    for path in images:
        image = load_image(path)  # decoded once: for the proposals, the classifier and the drawing
        found = found_by.detect(image)
        kept = found.above(threshold)
        record: dict[str, Any] = {"image": path, "detections": kept.to_json(found_by.classes), "seconds": found.seconds}
        if out:
            record["drawn"] = str(draw(image, kept, found_by.classes, Path(out) / (Path(path).stem + ".png")))
        records.append(record)
    return records


def plot_precision_recall(results: dict[str, Any], path: str | Path, title: str = "") -> None:
    """Precision against recall per class, AP in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, (precision, recall) in results["curves"].items():
        ax.plot(recall, precision, label=f"{name} ({100 * results['ap'][name]:.1f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"mAP {100 * results['map']:.1f}% ({results['metric']})")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw(image: Image.Image, detections: Detections, classes: list[str], out: str | os.PathLike) -> Path:
    """The decoded RGB image with every one of `detections` drawn (box, class, score), saved to `out`: what is
    shown is decided once, by the caller (`Detections.above`)."""
    from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image
    from torchvision.utils import draw_bounding_boxes

    image = pil_to_tensor(image)
    labels, scores = detections.labels, detections.scores
    names = [f"{classes[int(c)]} {s:.2f}" for c, s in zip(labels, scores, strict=True)]
    boxes = torch.as_tensor(detections.boxes).reshape(-1, 4)
    colours = [_colour(int(c)) for c in labels]
    drawn = draw_bounding_boxes(image, boxes, names, colors=colours, width=2) if len(boxes) else image
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    to_pil_image(drawn).save(out)
    return out


def _colour(label: int) -> tuple[int, int, int]:
    palette = [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
    ]
    return palette[label % len(palette)]
