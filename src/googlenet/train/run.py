"""`Run`: everything one training run holds (config, process group, model, optimizer, averaged weights, data, the
task and its parts, where it is); `context` is the narrow part of it a task sees (`TaskContext`)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from googlenet.data import Augmented, Transformed
from googlenet.train import distributed
from googlenet.train.config import TrainConfig
from googlenet.train.steps import StepRecord
from googlenet.train.task import Parts, Task, TaskContext


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
    out: Path
    task: Task
    parts: Parts  # what the task built: its data, classes, input scaling, the record it started from
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
    def classes(self) -> list[str]:
        return self.parts.classes

    @property
    def mean(self) -> tuple[float, ...]:
        return self.parts.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.parts.std

    def inference_model(self) -> nn.Module:
        """The model that is evaluated and exported: the Polyak average where there is one."""
        return self.averaged.module if self.averaged is not None else self.model

    @property
    def context(self) -> TaskContext:
        """What the task sees of this run."""
        return TaskContext(
            device=self.ctx.device,
            dtype=self.dtype,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            batch=self.per_rank_batch,
            workers=self.cfg.data.workers,
            seed=self.cfg.run.seed,
            autocast=self.autocast,
            reduce=lambda sums: distributed.all_reduce_sum(sums, self.ctx),
            to_device=self.to_device,
        )

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
            transform = self.parts.batch_transform
            assert transform is not None, "a batch of (pixels, colour) needs the task's batch_transform"
            images = transform(pixels.contiguous(memory_format=memory), colour, self.dtype)
        return images.to(self.ctx.device, self.dtype, non_blocking=True, memory_format=memory)

    @property
    def per_rank_batch(self) -> int:
        return self.cfg.data.batch_size // self.ctx.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.task.epoch_size(self.parts.train_set, self.cfg) // self.cfg.data.batch_size

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
