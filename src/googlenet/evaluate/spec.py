"""What `googlenet evaluate` runs, as one object (`EvaluationSpec`): the model or ensemble, how each image is cut
and pooled, the data, and where and how fast it runs. The CLI builds it once; a Python user builds the same."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationSpec:
    """One evaluation: `checkpoints` (several = an ensemble averaging their softmax), `crops` per image pooled by
    `pool`, on `data` (a registered dataset layout that needs no folder, such as fashion_mnist, with its `split`
    read from `root`; or an ImageFolder split folder), its first `limit` images (0 = all), in batches of
    `batch_size` images with `workers` loader processes, on `device`, as the inference form (in `precision`: fp32 or
    bf16) unless `optimize` is off; with `table3`, the paper's Table 3 instead."""

    checkpoints: tuple[str, ...]
    crops: int = 1
    pool: str = "mean"
    data: str = "fashion_mnist"
    split: str = "test"
    root: str | None = None
    limit: int = 0
    batch_size: int = 32
    workers: int = 1
    device: str = "auto"
    optimize: bool = True
    precision: str = "fp32"
    table3: bool = False

    def check(self) -> None:
        """Impossible values are a one-line ValueError, before anything is loaded."""
        if self.limit < 0 or self.batch_size < 1 or self.workers < 0:
            raise ValueError("--limit and --workers must be >= 0 and --batch-size >= 1")
        if not self.checkpoints:
            raise ValueError("an evaluation needs at least one model (--checkpoint)")
