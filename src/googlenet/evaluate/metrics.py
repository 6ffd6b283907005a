"""Top-k accuracy (section 7: top-1 accuracy and top-5 error)."""

from __future__ import annotations

import torch


def topk_correct(scores: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """How many rows of `scores` have their target among the k highest, for each k (k capped at the classes)."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == targets.unsqueeze(1)
    return {k: int(hits[:, :k].any(dim=1).sum()) for k in ks}
