"""R-CNN's bounding-box regression, an extension: the paper's detector had none. Per class, a ridge regression
from the region classifier's pooled 1024-d features of a proposal to the offsets of the object it overlaps
(IoU >= 0.6): centre shifts in units of the proposal's size and log size ratios."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torchvision.ops import box_iou
from tqdm import tqdm

from googlenet.data.detection import VOCDetection
from googlenet.data.images import image_tensor
from googlenet.detect.regions import fitted_path, load_regions, region_head, warp_pixels
from googlenet.model import GoogLeNet

LAMBDAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)


def encode(proposals: torch.Tensor, truths: torch.Tensor) -> torch.Tensor:
    """R-CNN's targets (tx, ty, tw, th) that move each proposal onto its object."""
    pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    gw, gh = truths[:, 2] - truths[:, 0], truths[:, 3] - truths[:, 1]
    px, py = proposals[:, 0] + pw / 2, proposals[:, 1] + ph / 2
    gx, gy = truths[:, 0] + gw / 2, truths[:, 1] + gh / 2
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=1)


def decode(proposals: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Boxes moved by `deltas` (inverse of `encode`); proposals (N, 4), deltas (N, 4)."""
    pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    px, py = proposals[:, 0] + pw / 2, proposals[:, 1] + ph / 2
    x, y = px + pw * deltas[:, 0], py + ph * deltas[:, 1]
    w, h = pw * torch.exp(deltas[:, 2].clamp(max=4)), ph * torch.exp(deltas[:, 3].clamp(max=4))
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=1)


def features(model: GoogLeNet, windows: torch.Tensor) -> torch.Tensor:
    """The pooled (pre-classifier) features of normalised windows."""
    return model.forward_head(model.forward_features(windows), pre_logits=True).float()


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """W (D + 1, 4) minimising ||[x 1] W - y||^2 + lam ||W without its bias row||^2."""
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    penalty = torch.eye(x1.shape[1], dtype=x.dtype) * lam
    penalty[-1, -1] = 0
    return torch.linalg.solve(x1.T @ x1 + penalty, x1.T @ y)


def apply(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Deltas (N, K, 4) of every class's regressor (weights (K, D + 1, 4)) for features x (N, D)."""
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    return torch.einsum("nd,kdo->nko", x1, weights.to(x.dtype))


@torch.inference_mode()
def collect(
    model: GoogLeNet,
    data: VOCDetection,
    proposals: list[np.ndarray],
    iou: float = 0.6,
    max_windows: int = 20000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, targets and class of proposals with IoU >= `iou` to an object (at most `max_windows`, drawn at
    random over the dataset)."""
    meta = model.meta
    context = region_head(model).context
    mean, std = torch.tensor(meta.mean)[:, None, None], torch.tensor(meta.std)[:, None, None]
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
        windows = warp_pixels(image_tensor(data.image_path(k)), boxes, meta.input_size, context, meta.mean)
        xs.append(features(model, (windows - mean) / std))
        ys.append(encode(boxes, truths))
        cs.append(torch.as_tensor(data.labels(k)[[j for _, j in pairs]]))
    if not xs:
        raise ValueError(f"no proposal overlaps an object by IoU >= {iou}: nothing to fit the regression on")
    return torch.cat(xs).double(), torch.cat(ys).double(), torch.cat(cs)


def fit(
    x: torch.Tensor, y: torch.Tensor, classes: torch.Tensor, num_classes: int, seed: int = 0
) -> tuple[torch.Tensor, dict[str, float]]:
    """One ridge regressor per class, lambda chosen on a held-out fifth of the windows, then refit on all.
    Returns (weights (K, D + 1, 4), report: lambda, held-out error of the identity and of the regression)."""
    generator = torch.Generator().manual_seed(seed)
    held = torch.rand(len(x), generator=generator) < 0.2
    errors = {}
    for lam in LAMBDAS:
        total = 0.0
        for c in range(num_classes):
            train, test = (classes == c) & ~held, (classes == c) & held
            if train.sum() > 0 and test.sum() > 0:
                w = ridge(x[train], y[train], lam)
                total += float(((apply(w[None], x[test])[:, 0] - y[test]) ** 2).sum())
        errors[lam] = total / max(int(held.sum()), 1)
    best = min(errors, key=errors.__getitem__)
    weights = torch.zeros(num_classes, x.shape[1] + 1, 4, dtype=torch.float64)
    for c in range(num_classes):
        mine = classes == c
        if mine.sum() > 0:
            weights[c] = ridge(x[mine], y[mine], best)
    identity = float((y[held] ** 2).sum()) / max(int(held.sum()), 1)
    report = {"lambda": best, "heldout_error": errors[best], "heldout_error_without": identity, "windows": len(x)}
    return weights.float(), report


def fit_for(
    checkpoint: str,
    data: str,
    split: str = "train",
    proposals: str | None = None,
    iou: float = 0.6,
    max_windows: int = 20000,
    limit: int = 0,
    workers: int = 1,
    cache: str | None = None,
    progress: bool = True,
) -> dict[str, object]:
    """`googlenet detect fit-bbox`: the region classifier `checkpoint`'s regressors, fitted on a VOC-layout
    split's `proposals` (default: the method it was trained on) and written beside it. Returns the report."""
    from googlenet.detect.proposals import dataset_proposals, joined

    if limit < 0 or max_windows < 1 or not 0 < iou < 1:
        raise ValueError("--limit must be >= 0, --max-windows >= 1 and --iou in (0, 1)")
    model = load_regions(checkpoint)
    method = proposals or region_head(model).proposals
    dataset = VOCDetection(data, split).limit(limit).matched_to(list(model.meta.class_names or [])[1:])  # 0: background
    boxes, _ = joined(dataset_proposals(dataset, method, cache, workers, None, progress))
    x, y, classes = collect(model, dataset, boxes, iou, max_windows, progress=progress)
    weights, report = fit(x, y, classes, model.meta.num_classes - 1)
    path = save(weights, fitted_path(checkpoint, "bbox"), report)
    return {
        **report,
        "path": str(path),
        "proposals": method,
        "images": len(dataset),
        "classes": model.meta.num_classes - 1,
    }


def save(weights: torch.Tensor, path: str | os.PathLike, report: dict[str, float]) -> Path:
    path = Path(path)
    save_file({"weight": weights.contiguous()}, str(path), metadata={k: str(v) for k, v in report.items()})
    return path


def load(path: str | os.PathLike) -> torch.Tensor:
    return load_file(str(path))["weight"]
