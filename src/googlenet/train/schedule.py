"""The paper's learning-rate schedule (section 6): decrease by 4% every 8 epochs."""

from __future__ import annotations

import math


def lr_at(
    step: int,
    base_lr: float,
    decay: float = 0.96,
    every: float = 8,
    unit: str = "epochs",
    steps_per_epoch: int = 1,
    warmup_steps: int = 0,
) -> float:
    """Learning rate for optimizer step `step` (0-based): a staircase, base_lr * decay ** (intervals done).

    `every` is in epochs or steps (`unit`); an optional linear warm-up scales the first steps.
    """
    interval = every * steps_per_epoch if unit == "epochs" else every
    lr = base_lr * decay ** math.floor(step / interval)
    if step < warmup_steps:
        lr *= (step + 1) / warmup_steps
    return lr
