"""Testing as in section 7: top-k metrics, multi-crop and ensemble evaluation, Table 3; `evaluate` and
`predict` are what `googlenet evaluate` and `googlenet predict` call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from googlenet.data.loaders import DATASETS, dataset_for
from googlenet.evaluate import multicrop
from googlenet.evaluate import table3 as paper_table3
from googlenet.evaluate.driver import resolve_device
from googlenet.evaluate.metrics import topk_correct
from googlenet.evaluate.multicrop import predict
from googlenet.evaluate.spec import EvaluationSpec
from googlenet.model import load_for_inference

__all__ = ["EvaluationSpec", "evaluate", "predict", "topk_correct"]


def evaluate(spec: EvaluationSpec, progress: bool = True) -> dict[str, Any]:
    """`googlenet evaluate`: the evaluation `spec` describes: top-1 / top-5 as fractions of one model or an
    ensemble with its crops per image (`multicrop.score`'s record, with the data named); or, with `spec.table3`,
    the paper's Table 3 (its record)."""
    spec.check()
    models = [load_for_inference(c, spec.optimize, spec.precision) for c in spec.checkpoints]
    meta = models[0].meta
    dataset = dataset_for(spec.data, spec.split, spec.root, meta.class_names, meta.class_ids)  # matched classes
    multicrop.check_classes(models, list(dataset.classes))
    on = resolve_device(spec.device)
    if spec.table3:
        return paper_table3.table3(
            models,
            list(spec.checkpoints),
            dataset,
            limit=spec.limit,
            batch_size=spec.batch_size,
            workers=spec.workers,
            device=on,
            progress=progress,
        )
    named = spec.data in DATASETS and not DATASETS[spec.data].needs_root  # a layout by name, not a folder
    return {
        **multicrop.score(models, dataset, spec, on, progress),
        "data": spec.data if named else str(Path(spec.data).resolve()),
        "split": spec.split if named else None,
    }
