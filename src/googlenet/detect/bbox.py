"""R-CNN's bounding-box regression, an extension: the paper's detector had none. Per class, a ridge regression
from the region classifier's pooled 1024-d features of a proposal to the offsets of the object it overlaps
(IoU >= 0.6): centre shifts in units of the proposal's size and log size ratios. The maths only: the features
are collected in fitting.py."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

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


def save(weights: torch.Tensor, path: str | os.PathLike, report: dict[str, float]) -> Path:
    path = Path(path)
    save_file({"weight": weights.contiguous()}, str(path), metadata={k: str(v) for k, v in report.items()})
    return path


def load(path: str | os.PathLike) -> torch.Tensor:
    return load_file(str(path))["weight"]
