"""Testing as in section 7: top-k metrics, multi-crop and ensemble evaluation, Table 3; `evaluate` and
`predict` are what `googlenet evaluate` and `googlenet predict` call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from googlenet.data.loaders import dataset_for
from googlenet.evaluate import multicrop
from googlenet.evaluate import table3 as paper_table3
from googlenet.evaluate.driver import resolve_device
from googlenet.evaluate.metrics import topk_correct
from googlenet.evaluate.multicrop import predict
from googlenet.model import load_for_inference

__all__ = ["evaluate", "predict", "topk_correct"]


def evaluate(
    checkpoints: list[str],
    crops: int = 1,
    pool: str = "mean",
    data: str = "fashion_mnist",
    split: str = "test",
    root: str | None = None,
    limit: int = 0,
    batch_size: int = 32,
    workers: int = 1,
    device: str = "auto",
    optimize: bool = True,
    progress: bool = True,
    table3: bool = False,
) -> dict[str, Any]:
    """`googlenet evaluate`: one model or the ensemble of `checkpoints` on `data` (fashion_mnist's `split`, or an
    ImageFolder split folder): top-1 / top-5 as fractions with `crops` crops per image, pooled by `pool`
    (`multicrop.score`'s record, with the data named); or, with `table3`, the paper's Table 3 (its record)."""
    if limit < 0 or batch_size < 1 or workers < 0:
        raise ValueError("--limit and --workers must be >= 0 and --batch-size >= 1")
    models = [load_for_inference(c, optimize) for c in checkpoints]
    meta = models[0].meta
    dataset = dataset_for(data, split, root, meta.class_names, meta.class_ids)  # folders matched to its classes
    multicrop.check_classes(models, list(dataset.classes))
    on = resolve_device(device)
    if table3:
        return paper_table3.table3(
            models,
            checkpoints,
            dataset,
            limit=limit,
            batch_size=batch_size,
            workers=workers,
            device=on,
            progress=progress,
        )
    return {
        **multicrop.score(models, checkpoints, dataset, crops, pool, limit, batch_size, workers, on, progress),
        "data": data if data == "fashion_mnist" else str(Path(data).resolve()),
        "split": split if data == "fashion_mnist" else None,
    }
