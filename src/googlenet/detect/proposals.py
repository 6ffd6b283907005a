"""Region proposals (paper section 8): Selective Search (OpenCV contrib) with R-CNN's fast recipe and with the
paper's superpixels twice as large, their recall of ground-truth boxes, and a per-image cache on disk."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou
from tqdm import tqdm

from googlenet.data.detection import VOCDetection


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


def _search_one(job: tuple[str, str]) -> tuple[np.ndarray, float]:
    """Selective Search on one image file in a worker process (OpenCV on one thread: one core per worker)."""
    import cv2

    from googlenet.data.images import load_image

    cv2.setNumThreads(1)
    path, method = job
    pixels = np.asarray(load_image(path))
    start = time.perf_counter()
    boxes = METHODS[method](pixels)
    return boxes, time.perf_counter() - start


def _cached(
    data: VOCDetection,
    cache: ProposalCache | None,
    desc: str,
    find: Callable[[list[int]], Iterator[tuple[np.ndarray, float]]],
    progress: bool,
) -> tuple[list[np.ndarray], list[float]]:
    """Every image's (boxes, seconds): from `cache` where it has them, else from `find(indices)` (in order),
    each result cached as it comes."""
    results: list[tuple[np.ndarray, float] | None] = [cache.get(i) if cache else None for i in data.ids]
    todo = [k for k, r in enumerate(results) if r is None]
    found = find(todo)
    with tqdm(total=len(data), initial=len(data) - len(todo), desc=desc, unit="img", disable=not progress) as bar:
        try:
            for k, result in zip(todo, found, strict=True):
                results[k] = result
                if cache:
                    cache.put(data.ids[k], *result)
                bar.update()
        finally:
            found.close()  # the generator's own clean-up (a worker pool) runs now, not at garbage collection
    done = [r for r in results if r is not None]  # every one, after the loop
    return [r[0] for r in done], [r[1] for r in done]


def search_dataset(
    data: VOCDetection, method: str, cache: ProposalCache | None = None, workers: int = 1, progress: bool = True
) -> tuple[list[np.ndarray], list[float]]:
    """Selective Search `method` on every image of `data`, in `workers` processes, cached: (boxes, seconds)."""
    if method not in METHODS:
        raise ValueError(f"unknown Selective Search method {method!r}; choose from {', '.join(METHODS)}")

    def search(todo: list[int]) -> Iterator[tuple[np.ndarray, float]]:
        jobs = [(str(data.image_path(k)), method) for k in todo]
        pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 and len(jobs) > 1 else None
        try:
            yield from pool.imap(_search_one, jobs) if pool else map(_search_one, jobs)
        finally:
            if pool:
                pool.terminate()

    return _cached(data, cache, method, search, progress)


def coverage(
    proposals: list[np.ndarray], data: VOCDetection, counts: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000, 2000)
) -> dict[str, Any]:
    """Recall at IoU 0.5 of `data`'s ground truth, with all proposals and with each image's first n."""
    truths = [a.boxes for a in data.annotations]
    return {
        "recall": recall(proposals, truths),
        "boxes_per_image": float(np.mean([len(p) for p in proposals])) if proposals else 0.0,
        "recall_at": {str(n): recall(proposals, truths, top=n) for n in counts},
        "objects": int(sum(len(t) for t in truths)),
    }


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


def multibox_dataset(
    data: VOCDetection,
    model: torch.nn.Module,
    cache: ProposalCache | None = None,
    tiles: int | None = None,
    progress: bool = True,
) -> tuple[list[np.ndarray], list[float]]:
    """MultiBox's top boxes after NMS for every image of `data` (whole image plus `tiles` x `tiles` crops;
    default: the model's setting), cached: (boxes, seconds)."""
    from googlenet.detect.multibox import BoxTransform, image_proposals, tiles_of

    meta = model.meta
    tiles = tiles_of(model, tiles)
    transform = BoxTransform(meta.input_size, meta.mean, meta.std, train=False)

    def propose(todo: list[int]) -> Iterator[tuple[np.ndarray, float]]:
        for k in todo:
            began = time.perf_counter()
            boxes = image_proposals(model, data[k][0], transform, meta.head.top, meta.head.nms, tiles)
            yield boxes, time.perf_counter() - began

    return _cached(data, cache, "multibox", propose, progress)


PAPER_SOURCES = ("ss2x", "multibox")  # the paper's proposals: Selective Search at 2x superpixels + MultiBox


def sources_of(method: str) -> tuple[str, ...]:
    """The methods whose boxes `method` joins: the paper's = ss2x + multibox, any other = itself."""
    known = [*METHODS, "multibox", "paper"]
    if method not in known:
        raise ValueError(f"unknown proposal method {method!r}; choose from {', '.join(known)}")
    return PAPER_SOURCES if method == "paper" else (method,)


def multibox_cache_name(checkpoint: str | os.PathLike, tiles: int = 1) -> str:
    """Cache folder name of one MultiBox model's proposals (named after its run folder and the tiling)."""
    return f"multibox-{Path(checkpoint).resolve().parent.name}" + (f"-tiles{tiles}" if tiles > 1 else "")


def dataset_proposals(
    data: VOCDetection,
    method: str,
    folder: str | os.PathLike | None = None,
    workers: int = 1,
    multibox: str | os.PathLike | None = None,
    progress: bool = True,
    tiles: int | None = None,
) -> dict[str, tuple[list[np.ndarray], list[float]]]:
    """Every image's proposals from each source of `method` (see `sources_of`), cached under `folder` (default
    DATA/proposals): {source: (boxes per image, seconds per image)}."""
    sources = sources_of(method)
    if "multibox" in sources and not multibox:
        raise ValueError(f"proposals {method!r} need a MultiBox checkpoint (from googlenet detect train-multibox)")
    folder = Path(folder) if folder else data.root / "proposals"
    found = {}
    for source in sources:
        if source == "multibox":
            from googlenet.detect.multibox import load_multibox, tiles_of

            model = load_multibox(multibox)
            tiles = tiles_of(model, tiles)
            store = ProposalCache(folder, multibox_cache_name(multibox, tiles))
            found[source] = multibox_dataset(data, model, store, tiles, progress)
        else:
            found[source] = search_dataset(data, source, ProposalCache(folder, source), workers, progress)
    return found


def joined(found: dict[str, tuple[list[np.ndarray], list[float]]]) -> tuple[list[np.ndarray], list[float]]:
    """The union of `dataset_proposals`' sources per image, with the summed seconds."""
    parts = list(found.values())
    boxes = [np.concatenate(b) for b in zip(*(p[0] for p in parts), strict=True)]
    seconds = [sum(t) for t in zip(*(p[1] for p in parts), strict=True)]
    return boxes, seconds


class Proposer:
    """Proposals for one decoded RGB image at a time (detection of new images): `proposer(image)` -> (N, 4)
    pixel boxes from a Selective Search method, or the paper's union with a MultiBox model."""

    def __init__(
        self, method: str = "ss2x", multibox: str | os.PathLike | None = None, tiles: int | None = None
    ) -> None:
        self.sources = sources_of(method)
        self.multibox = None
        if "multibox" in self.sources:
            if not multibox:
                raise ValueError(f"proposals {method!r} need --multibox CKPT (from googlenet detect train-multibox)")
            from googlenet.detect.multibox import BoxTransform, load_multibox, tiles_of

            self.multibox = load_multibox(multibox)
            meta = self.multibox.meta
            self.transform = BoxTransform(meta.input_size, meta.mean, meta.std, train=False)
            self.tiles = tiles_of(self.multibox, tiles)

    def __call__(self, image: Image.Image) -> np.ndarray:
        found = []
        for source in self.sources:
            if source == "multibox":
                from googlenet.detect.multibox import image_proposals

                head = self.multibox.meta.head
                found.append(image_proposals(self.multibox, image, self.transform, head.top, head.nms, self.tiles))
            else:
                found.append(METHODS[source](np.asarray(image)))
        return np.concatenate(found).astype(np.float32)
