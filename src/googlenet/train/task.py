"""What the training engine asks of each task (`Task`, `Parts`) and gives it (`TaskContext`: where it runs, not
the whole run), the run folder's file names, and the rules every task follows: the model it starts from
(`model_for`, `resolve_model`) and its inputs' mean/std (`input_scaling`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import Dataset

from googlenet.data.loaders import KeyedSampler
from googlenet.evaluate.driver import Evaluator
from googlenet.model import GoogLeNet, ModelMeta, build_model
from googlenet.model.hub import read_weights_record
from googlenet.model.weights import RUN_WEIGHTS
from googlenet.train.config import TrainConfig

CHECKPOINT, WEIGHTS, METRICS, PLOT, RESULTS, UNREADABLE = (
    "checkpoint.pt",
    RUN_WEIGHTS,
    "metrics.jsonl",
    "curves.png",
    "results.json",
    "unreadable.jsonl",
)


@dataclass
class Parts:
    """What a task builds for the loop: the model and the data (items: (PIL image, target))."""

    model: nn.Module
    train_set: Any  # a Dataset (or our ImageDataset)
    val_set: Any
    train_transform: Callable
    val_transform: Callable
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    batch_transform: Callable | None = None  # on the device, per batch: (pixels, colour, dtype) -> model inputs
    class_ids: list[str] | None = None  # the classes' dataset ids (ImageNet's wnids)
    start: ModelMeta | None = None  # the record of the network the task started from (checkpointed for resume)


@dataclass(frozen=True)
class TaskContext:
    """What a task sees of the run: where it runs (device, dtype, autocast), which process it is of how many,
    this process's share of a batch, loader workers, and `reduce` (sums over all processes)."""

    device: torch.device
    dtype: torch.dtype
    rank: int
    world_size: int
    batch: int
    workers: int
    seed: int
    autocast: Callable[[], contextlib.AbstractContextManager]
    reduce: Callable[[list[float]], list[float]]
    to_device: Callable[[Any], torch.Tensor]  # a batch of images on the device, in the run's dtype and layout


class Task:
    """What differs between the things the loop trains: image classification (`Classification`), MultiBox and
    the region classifier (googlenet.detect). The loop itself (schedule, SGD, averaging, checkpoints, resume,
    logging, torchrun, the evaluation driver) is shared; a task builds its parts, computes its loss, says how it
    is evaluated and exports. It keeps no state: what it builds travels in `Parts`."""

    name = "task"
    collate: Callable | None = None  # the DataLoader's collate_fn (None = PyTorch's default)
    joint = False  # the training transform takes (image, target), e.g. boxes that follow a flip
    raw_keys: tuple[str, ...] = ("top1", "top5")  # metrics of the raw (not averaged) weights to report too

    def epoch_size(self, train_set: Dataset, cfg: TrainConfig) -> int:
        """Training samples per epoch (all of them; the region classifier draws a fixed number of windows)."""
        return len(cast(Sized, train_set))

    def sampler(self, train_set: Dataset, cfg: TrainConfig, ctx: TaskContext, steps: int) -> KeyedSampler | None:
        """The order of this process's training samples over `steps` steps an epoch ((index, epoch) keys,
        set_epoch, a resumable `skip`); None = shuffled, this process's share (EpochSampler)."""
        return None

    def build(self, cfg: TrainConfig, start: ModelMeta | None = None) -> Parts:
        """Datasets, transforms and a fresh model (built under the run's init seed); `start`: a resumed run's
        record of its initial weights, built from instead of model.weights (see `model_for`)."""
        raise NotImplementedError

    def loss(self, net: nn.Module, images: torch.Tensor, targets: Any, cfg: TrainConfig) -> tuple[Any, ...]:
        """(loss to minimise, main loss, output) for one batch."""
        raise NotImplementedError

    def batch_stats(self, output: Any, targets: Any) -> dict[str, float]:
        """Sums over this process's batch, logged as fractions of the global batch (none by default)."""
        return {}

    def evaluation(
        self, model: nn.Module, data: Dataset, cfg: TrainConfig, ctx: TaskContext
    ) -> tuple[Iterable[Any], Callable[[Any], Any], Evaluator]:
        """How `model` is evaluated on `data`: (this process's batches on the device, batch -> output, the
        evaluator that collects them and sums over processes). The engine runs them through the one evaluation
        driver (googlenet.evaluate.driver.inference_on_dataset)."""
        raise NotImplementedError

    def export(self, model: nn.Module, parts: Parts, cfg: TrainConfig, out: Path, results: dict[str, Any]) -> None:
        """`model` (the weights to keep: the Polyak average where there is one) with its metadata record, as
        out / WEIGHTS."""
        raise NotImplementedError

    def summary(self, results: dict[str, Any], cfg: TrainConfig) -> str:
        """The final metrics in one line for people."""
        raise NotImplementedError


def model_for(
    cfg: TrainConfig, num_classes: int | None, start: ModelMeta | None = None, aux: bool | None = None
) -> GoogLeNet:
    """The model a task starts from: model.weights (its classifier reset to `num_classes` where they differ;
    None: kept), or a fresh `model.name` network (of `num_classes`); `aux`: auxiliary heads (default: where
    optim.aux_weight weighs them). With `start` (a resumed run) the network that the weights recorded there
    make, with fresh values: the run's checkpoint holds every weight, so model.weights is not read again (it
    may have been moved or changed since)."""
    options: dict[str, Any] = dict(
        width=cfg.model.width,
        dropout=cfg.model.dropout,
        aux_dropout=cfg.model.aux_dropout,
        aux=cfg.optim.aux_weight > 0 if aux is None else aux,
    )
    if start is not None:
        model = build_model(start.variant, num_classes=start.num_classes, **{**start.options, **options})
        model.meta = start
    elif cfg.model.weights is None:
        return build_model(cfg.model.name, num_classes=num_classes, **options)
    else:
        model = build_model(cfg.model.name, weights=cfg.model.weights, **options)
    if num_classes is not None and model.num_classes != num_classes:
        model.reset_classifier(num_classes)
    return model


def weights_record(cfg: TrainConfig) -> ModelMeta | None:
    """The metadata record of model.weights (None without weights, or for a file that has none): a .safetensors
    file's header alone, since the task reads the weights themselves when it builds the model."""
    return read_weights_record(cfg.model.weights) if cfg.model.weights is not None else None


def resolve_model(cfg: TrainConfig, record: ModelMeta | None) -> TrainConfig:
    """`cfg` with model.name, model.width and model.input_size taken from the initial weights' `record` where the
    config does not set them (a .caffemodel is the paper's `googlenet`, width-0.25 weights are width 0.25);
    one line on stderr says which."""
    if record is None or record.task != "classify":
        return cfg
    found = {"name": record.variant, "width": record.options.get("width", 1.0), "input_size": record.input_size}
    taken = {k: v for k, v in found.items() if f"model.{k}" not in cfg.given and getattr(cfg.model, k) != v}
    if not taken:
        return cfg
    if os.environ.get("RANK", "0") == "0":
        said = ", ".join(f"model.{k} {v}" for k, v in taken.items())
        print(f"{said}: from {cfg.model.weights}'s record (set them in the config to override)", file=sys.stderr)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **taken))


def input_scaling(cfg: TrainConfig, record: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std the inputs are normalised with: data.mean/std where the config sets them, else `record`'s
    (anything with mean and std): a model's `meta`, which is the initial weights' record (model.weights), so
    that a fine-tuned network sees the input scale it was trained on, or the variant's for a fresh network."""
    return tuple(cfg.data.mean or record.mean), tuple(cfg.data.std or record.std)
