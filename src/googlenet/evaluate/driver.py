"""The one evaluation driver (detectron2's `inference_on_dataset`): it runs the model over the batches while an
evaluator (reset / process / evaluate) only collects; multi-crop testing, the training loop's evaluation,
MultiBox's recall and detection mAP all go through it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class Evaluator(Protocol):
    """Collects what a model gave for each batch; `evaluate` turns it into a record of metrics."""

    def reset(self) -> None: ...

    def process(self, inputs: Any, outputs: Any) -> None: ...

    def evaluate(self) -> dict[str, Any]: ...


def inference_on_dataset(
    model: Callable[[Any], Any],
    batches: Iterable[Any],
    evaluator: Evaluator,
    progress: Callable[[Any], int] | None = None,
    bar: Any = None,
) -> tuple[dict[str, Any], float]:
    """`evaluator.process(inputs, model(inputs))` for every batch (None batches, of nothing readable, are
    passed over), then `evaluator.evaluate()`. `bar` (a tqdm bar) advances by `progress(inputs)` per batch.
    Returns (the evaluator's record, the seconds the batches took)."""
    evaluator.reset()
    start = time.perf_counter()
    for inputs in batches:
        if inputs is None:
            continue
        evaluator.process(inputs, model(inputs))
        if bar is not None and progress is not None:
            bar.update(progress(inputs))
    seconds = time.perf_counter() - start
    return evaluator.evaluate(), seconds


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "img") -> Any:
    """The progress bar every evaluation shows (on stderr, so that --json output stays clean)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, disable=not enabled, file=sys.stderr)


def resolve_device(name: str, option: str = "--device") -> str:
    """A --device (or run.device, named by `option` in the error): `auto` is CUDA where there is one, else the
    CPU; `cuda` without one is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option} cuda: no CUDA device is available")
    return name
