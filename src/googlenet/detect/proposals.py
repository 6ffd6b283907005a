"""Region proposals (paper section 8) behind one interface, `Proposer` (a decoded image -> boxes): Selective
Search (OpenCV contrib) with R-CNN's fast recipe and with the paper's superpixels twice as large, a MultiBox
model (googlenet.detect.multibox), and their union; one cached loop over a dataset, and the recall of
ground-truth boxes."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou
from tqdm import tqdm

from googlenet.data.detection import VOCDetection
from googlenet.registry import Registry


@dataclass(frozen=True)
class DetectionData:
    """A VOC-layout split as every detection command reads it: the folder, the image list (`split`), the first
    `limit` images (0 = all), and the proposals' worker processes and cache folder (default: ROOT/proposals)."""

    root: str
    split: str = "test"
    limit: int = 0
    workers: int = 1
    cache: str | None = None

    def check(self) -> None:
        if self.limit < 0 or self.workers < 1:
            raise ValueError("--limit must be >= 0 and --workers >= 1")

    def load(self) -> VOCDetection:
        self.check()
        return VOCDetection(self.root, self.split).limit(self.limit)


class Proposer(Protocol):
    """Anything that proposes regions: one decoded RGB image -> (N, 4) float32 pixel boxes (x1, y1, x2, y2).
    `parallel` proposers are run one image per worker process over a dataset."""

    def __call__(self, image: Image.Image) -> np.ndarray: ...


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

    parallel = True  # one image per worker process (see `propose_dataset`)

    def __call__(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Boxes (N, 4) float32 (x1, y1, x2, y2) in the pixels of `image` (RGB; (H, W, 3) uint8 as an array)."""
        import cv2

        image = np.asarray(image)
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


@dataclass(frozen=True)
class ProposalMethod:
    """A proposal method by name (--method, --proposals, detect.proposals): `make` (a MultiBox checkpoint or
    None, tiles or None) -> its `Proposer`; a union of others names them in `sources` instead (the paper's)."""

    name: str
    help: str
    make: Callable[[str | os.PathLike | None, int | None], Proposer] | None = None
    sources: tuple[str, ...] = ()


PROPOSERS: Registry[ProposalMethod] = Registry("proposal method")


def register_proposer(method: ProposalMethod) -> ProposalMethod:
    """Add a proposal method: every command that proposes regions offers it."""
    return PROPOSERS.register(method.name, method)


def _multibox(checkpoint: str | os.PathLike | None, tiles: int | None) -> Proposer:
    if not checkpoint:
        raise ValueError(
            "MultiBox proposals need a MultiBox checkpoint (--multibox, from googlenet detect train-multibox)"
        )
    from googlenet.detect.multibox import MultiBoxProposer

    return MultiBoxProposer.load(checkpoint, tiles)


def _search(settings: SelectiveSearch) -> Callable[[str | os.PathLike | None, int | None], Proposer]:
    return lambda checkpoint, tiles: settings


# R-CNN's fast recipe, and the paper's: "the superpixel size was increased by 2x", i.e. k doubled.
for _method in (
    ProposalMethod("ss", "R-CNN's fast Selective Search", _search(SelectiveSearch())),
    ProposalMethod("ss2x", "Selective Search at 2x superpixels (the paper's)", _search(SelectiveSearch(ks=(100, 200)))),
    ProposalMethod("opencv_fast", "OpenCV's fast preset", _search(SelectiveSearch(opencv="fast"))),
    ProposalMethod("opencv_quality", "OpenCV's quality preset", _search(SelectiveSearch(opencv="quality"))),
    ProposalMethod("multibox", "a trained MultiBox model's top boxes", _multibox),
    ProposalMethod("paper", "the paper's union: ss2x + multibox", sources=("ss2x", "multibox")),
):
    register_proposer(_method)


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
    """Proposals per image id in `folder/<method>/<id>.npz` (boxes and the seconds they took), so training
    and later evaluations never recompute them."""

    def __init__(self, folder: str | os.PathLike, method: str) -> None:
        self.folder = Path(folder) / method
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, ident: str) -> Path:
        return self.folder / f"{ident}.npz"

    def get(self, ident: str) -> tuple[np.ndarray, float] | None:
        path = self.path(ident)
        if not path.is_file():
            return None
        with np.load(path) as stored:
            return stored["boxes"], float(stored["seconds"])

    def put(self, ident: str, boxes: np.ndarray, seconds: float) -> None:
        tmp = self.folder / f".{ident}.tmp.npz"
        np.savez(tmp, boxes=boxes.astype(np.float32), seconds=np.float64(seconds))
        tmp.replace(self.path(ident))


def _propose_one(job: tuple[str, Proposer]) -> tuple[np.ndarray, float]:
    """One image file's proposals and the seconds they took, in a worker process (OpenCV on one thread: one
    core per worker)."""
    import cv2

    from googlenet.data.images import load_image

    cv2.setNumThreads(1)
    path, proposer = job
    image = load_image(path)
    start = time.perf_counter()
    boxes = proposer(image)
    return boxes, time.perf_counter() - start


def propose_dataset(
    data: VOCDetection,
    proposer: Proposer,
    cache: ProposalCache | None = None,
    workers: int = 1,
    progress: bool = True,
    desc: str = "proposals",
) -> tuple[list[np.ndarray], list[float]]:
    """Every image's (boxes, seconds) from `proposer`: from `cache` where it has them, else computed (in
    `workers` processes when the proposer runs apart, as Selective Search does) and cached as they come."""
    results: list[tuple[np.ndarray, float] | None] = [cache.get(i) if cache else None for i in data.ids]
    todo = [k for k, r in enumerate(results) if r is None]
    jobs = [(str(data.image_path(k)), proposer) for k in todo]
    apart = getattr(proposer, "parallel", False) and workers > 1 and len(jobs) > 1
    pool = multiprocessing.get_context("spawn").Pool(workers) if apart else None
    try:
        found = pool.imap(_propose_one, jobs) if pool else map(_propose_one, jobs)
        with tqdm(total=len(data), initial=len(data) - len(todo), desc=desc, unit="img", disable=not progress) as bar:
            for k, result in zip(todo, found, strict=True):
                results[k] = result
                if cache:
                    cache.put(data.ids[k], *result)
                bar.update()
    finally:
        if pool:
            pool.terminate()
    done = [r for r in results if r is not None]  # every one, after the loop
    return [r[0] for r in done], [r[1] for r in done]


def coverage(
    proposals: list[np.ndarray], data: VOCDetection, counts: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000, 2000)
) -> dict[str, Any]:
    """Recall at IoU 0.5 of `data`'s ground truth, with all proposals and with each image's first n; for the
    images of each scene <style> too (`styles`) when the dataset has styles."""
    truths = [a.boxes for a in data.annotations]
    found: dict[str, Any] = {
        "recall": recall(proposals, truths),
        "boxes_per_image": float(np.mean([len(p) for p in proposals])) if proposals else 0.0,
        "recall_at": {str(n): recall(proposals, truths, top=n) for n in counts},
        "objects": int(sum(len(t) for t in truths)),
    }
    styles = sorted({a.style for a in data.annotations} - {""})
    if styles:
        found["styles"] = {}
        for style in styles:
            mine = [k for k, a in enumerate(data.annotations) if a.style == style]
            found["styles"][style] = {
                "recall": recall([proposals[k] for k in mine], [truths[k] for k in mine]),
                "objects": int(sum(len(truths[k]) for k in mine)),
            }
    return found


def plot_recall(results: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Recall against the number of proposals per image, one line per method (its first n, then all)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, r in results.items():
        points = sorted((int(n), v) for n, v in r["recall_at"].items() if int(n) < r["boxes_per_image"])
        points.append((r["boxes_per_image"], r["recall"]))
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], "o-", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image")
    ax.set_ylabel("recall at IoU 0.5 (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sources_of(method: str) -> tuple[str, ...]:
    """The methods whose boxes `method` joins: a union's sources (the paper's = ss2x + multibox), any other itself."""
    return PROPOSERS.get_part(method).sources or (method,)


class Joined:
    """The union of several proposers' boxes for one image, in order (the paper's: Selective Search, then
    MultiBox); `sources` maps each source's name to its proposer."""

    def __init__(self, sources: dict[str, Proposer]) -> None:
        self.sources = sources

    def __call__(self, image: Image.Image) -> np.ndarray:
        return np.concatenate([propose(image) for propose in self.sources.values()]).astype(np.float32)


def proposer_for(method: str = "ss2x", multibox: str | os.PathLike | None = None, tiles: int | None = None) -> Joined:
    """The proposer of a registered `method` (`PROPOSERS`), made with the `multibox` checkpoint and `tiles` where
    it needs them (MultiBox: on the whole image and `tiles` x `tiles` crops; default: the model's tiling)."""
    sources: dict[str, Proposer] = {}
    for source in sources_of(method):
        make = PROPOSERS[source].make
        if make is None:
            raise ValueError(f"proposal method {source!r} makes no proposer of its own")
        sources[source] = make(multibox, tiles)
    return Joined(sources)


def cache_name(source: str, proposer: Proposer) -> str:
    """The cache folder of one source's proposals (a MultiBox model's is named after its weights)."""
    return getattr(proposer, "cache_name", source)


def dataset_proposals(
    data: VOCDetection,
    method: str,
    folder: str | os.PathLike | None = None,
    workers: int = 1,
    multibox: str | os.PathLike | None = None,
    progress: bool = True,
    tiles: int | None = None,
) -> dict[str, tuple[list[np.ndarray], list[float]]]:
    """Every image's proposals from each source of `method` (see `proposer_for`), cached under `folder`
    (default DATA/proposals): {source: (boxes per image, seconds per image)}."""
    return propose_sources(data, proposer_for(method, multibox, tiles), folder, workers, progress)


def propose_sources(
    data: VOCDetection,
    proposer: Proposer,
    folder: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, tuple[list[np.ndarray], list[float]]]:
    """`propose_dataset` for each source of `proposer` (a `Joined` proposer's each; any other is one source),
    each cached in its own folder under `folder` (default DATA/proposals): {source: (boxes, seconds) per image}."""
    folder = Path(folder) if folder else data.root / "proposals"
    sources = proposer.sources if isinstance(proposer, Joined) else {cache_name("proposals", proposer): proposer}
    return {
        source: propose_dataset(data, p, ProposalCache(folder, cache_name(source, p)), workers, progress, source)
        for source, p in sources.items()
    }


def merge_sources(found: dict[str, tuple[list[np.ndarray], list[float]]]) -> tuple[list[np.ndarray], list[float]]:
    """The union of `dataset_proposals`' sources per image, with the summed seconds."""
    parts = list(found.values())
    boxes = [np.concatenate(b) for b in zip(*(p[0] for p in parts), strict=True)]
    seconds = [sum(t) for t in zip(*(p[1] for p in parts), strict=True)]
    return boxes, seconds


def proposal_report(
    data: DetectionData,
    methods: Sequence[str] = ("ss2x",),
    multibox: str | None = None,
    tiles: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """`googlenet detect proposals`: per method, the boxes per image, the recall of the ground truth at IoU 0.5
    (also with each image's first n boxes) and the seconds per image; a union also per source."""
    data.check()
    if tiles is not None and tiles < 1:
        raise ValueError("--tiles must be >= 1")
    for method in methods:
        sources_of(method)  # an unknown method is an error before anything is read
    if "multibox" in {s for m in methods for s in sources_of(m)} and not multibox:
        raise ValueError("--method multibox and paper need --multibox CKPT (from googlenet detect train-multibox)")
    dataset = data.load()
    found: dict[str, tuple[list, list]] = {}
    for method in methods:
        for source in sources_of(method):
            if source not in found:
                found.update(dataset_proposals(dataset, source, data.cache, data.workers, multibox, progress, tiles))
    results = {}
    for method in methods:
        parts = {m: found[m] for m in sources_of(method)}
        boxes, seconds = merge_sources(parts)
        results[method] = {"method": method, "images": len(dataset), **coverage(boxes, dataset)}
        results[method]["seconds_per_image"] = sum(seconds) / max(len(seconds), 1)
        if len(parts) > 1:
            results[method]["sources"] = {m: coverage(p[0], dataset) for m, p in parts.items()}
    return results
