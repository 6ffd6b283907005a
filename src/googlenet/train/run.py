"""`Run`: everything one training run holds (config, process group, model, optimizer, averaged weights, data,
where it is), with what every task reads of it: the device, the dtype, autocast, the batch on the device."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from googlenet.data import Augmented, Transformed
from googlenet.model import ModelMeta
from googlenet.train import distributed
from googlenet.train.config import TrainConfig
from googlenet.train.steps import StepRecord

if TYPE_CHECKING:
    from googlenet.train.task import Task


@dataclass
class Run:
    """Everything one training run holds; `step` and `epoch` say where it is."""

    cfg: TrainConfig
    ctx: distributed.Context
    model: nn.Module  # the task's network (a GoogLeNet, or MultiBox around one)
    net: nn.Module  # the model as trained: DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    averaged: AveragedModel | None
    train_data: Augmented
    val_data: Transformed
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    out: Path
    task: Task
    start: ModelMeta | None = None  # the record of the weights the task started from (Parts.start)
    batch_transform: Any = None  # the training augmentation's per-batch part (Parts.batch_transform)
    class_ids: list[str] | None = None
    step: int = 0
    epoch: int = 0
    log_file: Any = None
    board: Any = None
    last_eval: tuple[int, dict] | None = None  # (step, record) of the latest evaluation of the averaged weights
    saved_step: int | None = None  # the step of the latest checkpoint on disk
    nonfinite: int = 0  # non-finite losses in a row at the latest read of `record`, each step skipped
    record: StepRecord | None = None  # what the steps leave on the device between two reads
    stop: int = 0  # the signal (SIGTERM, SIGINT) that asked the run to checkpoint and stop

    @property
    def dtype(self) -> torch.dtype:
        """The weights' and inputs' floating-point type (run.dtype)."""
        return getattr(torch, self.cfg.run.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on CUDA with run.amp, on the CPU with run.cpu_amp, else nothing."""
        if self.ctx.device.type == "cuda" and self.cfg.run.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.ctx.device.type == "cpu" and self.cfg.run.cpu_amp:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, images: Any) -> torch.Tensor:
        """A batch of images on this process's device, in the run's dtype and memory format; a training batch of
        uint8 crops with their colour parameters gets the augmentation's per-batch part there."""
        memory = torch.channels_last if self.cfg.run.channels_last else torch.contiguous_format
        if isinstance(images, (list, tuple)):
            pixels, colour = (t.to(self.ctx.device, non_blocking=True) for t in images)
            images = self.batch_transform(pixels.contiguous(memory_format=memory), colour, self.dtype)
        return images.to(self.ctx.device, self.dtype, non_blocking=True, memory_format=memory)

    @property
    def per_rank_batch(self) -> int:
        return self.cfg.data.batch_size // self.ctx.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.task.epoch_size(self.train_data.dataset) // self.cfg.data.batch_size

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.cfg.optim.epochs
        return min(total, self.cfg.run.max_steps) if self.cfg.run.max_steps else total

    def log(self, record: dict) -> None:
        if self.ctx.is_main:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()
            if self.board is not None:
                for key, value in record.items():
                    if isinstance(value, float):
                        self.board.add_scalar(f"{record['kind']}/{key}", value, record["step"])
