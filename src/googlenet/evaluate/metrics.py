"""Top-k accuracy (section 7: top-1 accuracy and top-5 error), and the evaluator of a classifier's loss and
top-1 / top-5 for the evaluation driver."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def topk_correct(scores: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """How many rows of `scores` have their target among the k highest, for each k (k capped at the classes)."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == targets.unsqueeze(1)
    return {k: int(hits[:, :k].any(dim=1).sum()) for k in ks}


class TopK:
    """Evaluator (reset / process / evaluate) of a classifier's mean cross-entropy and top-1 / top-5 accuracy
    (fractions). `reduce` sums the running totals over processes (torch.distributed) before they are divided."""

    def __init__(self, reduce: Callable[[list[float]], list[float]] = lambda sums: sums) -> None:
        self.reduce = reduce
        self.reset()

    def reset(self) -> None:
        self.loss_sum = self.correct1 = self.correct5 = self.count = 0.0

    def process(self, inputs: tuple[torch.Tensor, torch.Tensor], outputs: torch.Tensor) -> None:
        """A batch (images, targets) and its logits."""
        targets = inputs[1]
        self.loss_sum += F.cross_entropy(outputs, targets, reduction="sum").item()
        hits = topk_correct(outputs, targets, (1, 5))
        self.correct1, self.correct5 = self.correct1 + hits[1], self.correct5 + hits[5]
        self.count += len(targets)

    def evaluate(self) -> dict[str, float]:
        loss_sum, correct1, correct5, count = self.reduce([self.loss_sum, self.correct1, self.correct5, self.count])
        return {"loss": loss_sum / count, "top1": correct1 / count, "top5": correct5 / count, "images": int(count)}
