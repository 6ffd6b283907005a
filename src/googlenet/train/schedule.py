"""Learning-rate schedules by name (`SCHEDULES`, chosen by optim.schedule): the paper's (section 6), a decrease
by 4% every 8 epochs, and any registered one; each with the optional linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from googlenet.registry import Registry

Schedule = Callable[[int, Any, int], float]  # (step, the config's optim section, steps per epoch) -> learning rate


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


def _paper(step: int, optim: Any, steps_per_epoch: int) -> float:
    return lr_at(step, optim.lr, optim.lr_decay, optim.decay_every, optim.decay_unit, steps_per_epoch)


SCHEDULES: Registry[Schedule] = Registry("learning-rate schedule")


def register_schedule(name: str, schedule: Schedule) -> Schedule:
    """Add a schedule: optim.schedule NAME then trains with it (warm-up applied on top)."""
    return SCHEDULES.register(name, schedule)


register_schedule("step", _paper)


def lr_for(step: int, optim: Any, steps_per_epoch: int) -> float:
    """The learning rate of step `step` (0-based) under the config's `optim` section: its schedule, then the
    linear warm-up over optim.warmup_steps."""
    lr = SCHEDULES[optim.schedule](step, optim, steps_per_epoch)
    if step < optim.warmup_steps:
        lr *= (step + 1) / optim.warmup_steps
    return lr
