"""R-CNN's object scorers: per class a linear SVM on the region classifier's pooled features, trained on the
ground-truth boxes as positives and, as negatives, proposals that overlap no object of the class by IoU 0.3,
mined hard over the training images (R-CNN's hard-negative mining, in feature space). The maths only: the
features are collected in fitting.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

FEATURE_NORM = 20.0  # R-CNN scales the features to this mean norm before the SVMs
NEG_IOU = 0.3  # R-CNN: a proposal overlapping an object of the class by less is a negative for that class
HARD, EVICT = -1.0, -1.2  # R-CNN: negatives scoring above HARD join the cache; those below EVICT leave it
CHUNK = 65536  # rows of features scored at once in float64 (the features themselves are never copied whole)


def scores(svms: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Every class's SVM margin (N, K) for pooled features x (N, D): weights (K, D + 1), the last column the
    bias, on features scaled by the fitted `scale`."""
    weight = svms["weight"].to(x.dtype)
    return (x * svms["scale"].to(x.dtype)) @ weight[:, :-1].T + weight[:, -1]


def train_svm(
    x: torch.Tensor, y: torch.Tensor, c: float = 1e-3, pos_weight: float = 2.0, iterations: int = 200
) -> torch.Tensor:
    """A linear SVM, w (D + 1,) with the bias last, minimising 0.5 ||w without bias||^2 + c sum_i a_i
    max(0, 1 - y_i (w . [x_i 1]))^2 (the squared hinge, liblinear's default loss; y in {-1, +1}; a_i = `pos_weight`
    for positives, as R-CNN's -w1 2), by full-batch L-BFGS in float64."""
    x1 = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    y = y.double()
    weight = torch.where(y > 0, pos_weight, 1.0).double()
    w = torch.zeros(x1.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w], max_iter=iterations, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        margin = torch.relu(1 - y * (x1 @ w))
        loss = 0.5 * (w[:-1] ** 2).sum() + c * (weight * margin**2).sum()
        loss.backward()
        return loss

    optimiser.step(objective)
    return w.detach()


def margins(x: torch.Tensor, w: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The SVM margins w . [x_i 1] in float64 of the rows `rows` of x (all rows when None), CHUNK at a time."""
    count = len(x) if rows is None else len(rows)
    parts = [x[i : i + CHUNK] if rows is None else x[rows[i : i + CHUNK]] for i in range(0, count, CHUNK)]
    return torch.cat([part.double() @ w[:-1] + w[-1] for part in parts] or [torch.zeros(0, dtype=torch.float64)])


def mine(
    positives: torch.Tensor,
    negatives: torch.Tensor,
    c: float = 1e-3,
    rounds: int = 3,
    first: int = 5000,
    cache_limit: int = 50000,
    seed: int = 0,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, int]]:
    """One class's SVM with hard-negative mining: trained on the positives and `first` random negatives, then
    `rounds` times: every negative scoring above -1 joins the cache (the hardest `cache_limit`), cached ones below
    -1.2 leave it, retrained. Stops early when no new hard negative is found. The negatives are the rows `rows` of
    `negatives` (all when None), read in place. Returns (w, report)."""
    generator = torch.Generator().manual_seed(seed)
    count = len(negatives) if rows is None else len(rows)
    pool = torch.arange(count) if rows is None else rows  # cache positions -> rows of `negatives`
    cache = torch.randperm(count, generator=generator)[:first]
    report = {"positives": len(positives), "negatives": count, "rounds": 0}
    w = torch.zeros(positives.shape[1] + 1, dtype=torch.float64)
    for step in range(rounds + 1):
        x = torch.cat([positives, negatives[pool[cache]]])
        y = torch.cat([torch.ones(len(positives)), -torch.ones(len(cache))])
        w = train_svm(x, y, c)
        if step == rounds:
            break
        margin = margins(negatives, w, rows)
        cached = torch.zeros(count, dtype=torch.bool)
        cached[cache] = True
        new = torch.nonzero((margin > HARD) & ~cached).flatten()
        report["rounds"] = step + 1
        if not len(new):
            break
        kept = cache[margin[cache] >= EVICT]
        cache = torch.cat([kept, new])
        if len(cache) > cache_limit:
            cache = cache[margin[cache].argsort(descending=True)[:cache_limit]]
    report["cache"] = len(cache)
    report["hard_left"] = int((margins(negatives, w, rows) > HARD).sum())
    report["positives_missed"] = int((margins(positives, w) < 0).sum())
    return w.float(), report


def fit(
    truths: torch.Tensor,
    labels: torch.Tensor,
    found: torch.Tensor,
    overlaps: torch.Tensor,
    c: float = 1e-3,
    rounds: int = 3,
    progress: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every class's SVM (see `mine`) on features scaled to R-CNN's mean norm of 20; negatives for class k are
    the proposals overlapping its objects by IoU < 0.3 (objects of other classes included). Returns
    ({weight (K, D + 1), scale}, report)."""
    scale = FEATURE_NORM / found.norm(dim=1).mean().clamp(min=1e-12)
    truths, found = truths * scale, found * scale
    classes = overlaps.shape[1]
    weights = torch.zeros(classes, found.shape[1] + 1)
    report: dict[str, Any] = {"c": c, "rounds": rounds, "classes": {}}
    for k in tqdm(range(classes), desc="svms", disable=not progress):
        positives = truths[labels == k]
        if not len(positives):
            weights[k, -1] = -10.0  # a class without objects here: margin -10 everywhere, never detected
            continue
        negatives = torch.nonzero(overlaps[:, k] < NEG_IOU).flatten()
        w, part = mine(positives, found, c, rounds, seed=k, rows=negatives)
        weights[k] = w
        report["classes"][k] = part
    return {"weight": weights, "scale": scale.reshape(1).float()}, report


def save(svms: dict[str, torch.Tensor], path: str | os.PathLike, report: dict[str, Any]) -> Path:
    path = Path(path)
    tensors = {k: v.contiguous() for k, v in svms.items()}
    save_file(tensors, str(path), metadata={"c": str(report["c"]), "rounds": str(report["rounds"])})
    return path


def load(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    found = load_file(str(path))
    if set(found) != {"weight", "scale"}:
        raise ValueError(f"{path} holds no region classifier SVMs (fit them with googlenet detect fit-svm)")
    return found
