"""What the training engine asks of each task (`Task`, `Parts`), the run folder's file names, and the rules every
task follows: the model it starts from (`model_for`), its inputs' mean/std (`input_scaling`) and the weights it
evaluates and exports (`inference_model`)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.utils.data import Dataset

from googlenet.data import Augmented
from googlenet.data.loaders import KeyedSampler
from googlenet.model import GoogLeNet, ModelMeta, build_model, read_weights
from googlenet.model.weights import RUN_WEIGHTS
from googlenet.train.config import TrainConfig

if TYPE_CHECKING:
    from googlenet.train.run import Run

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


class Task:
    """What differs between the things the loop trains: image classification (`Classification`), MultiBox and
    the region classifier (googlenet.detect). The loop itself (schedule, SGD, averaging, checkpoints, resume,
    logging, torchrun) is shared; a task builds its parts, computes its loss, evaluates and exports."""

    name = "task"
    collate: Callable | None = None  # the DataLoader's collate_fn (None = PyTorch's default)
    joint = False  # the training transform takes (image, target), e.g. boxes that follow a flip
    raw_keys: tuple[str, ...] = ("top1", "top5")  # metrics of the raw (not averaged) weights to report too

    def epoch_size(self, train_set: Dataset) -> int:
        """Training samples per epoch (all of them; the region classifier draws a fixed number of windows)."""
        return len(cast(Sized, train_set))

    def sampler(self, data: Augmented, run: Run) -> KeyedSampler | None:
        """The order of this process's training samples ((index, epoch) keys, set_epoch, a resumable `skip`);
        None = shuffled, this process's share (EpochSampler)."""
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

    def evaluate(self, model: nn.Module, data: Dataset, run: Run) -> dict[str, float]:
        """The metrics of `model` on `data`, summed over all processes."""
        raise NotImplementedError

    def export(self, run: Run, results: dict[str, Any]) -> None:
        """The inference weights with their metadata record, in run.out / WEIGHTS."""
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
    """The metadata record of model.weights (None without weights, or for a file that has none)."""
    return read_weights(cfg.model.weights)[1] if cfg.model.weights is not None else None


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


def inference_model(run: Run) -> nn.Module:
    """The model that is evaluated and exported: the Polyak average where there is one."""
    return run.averaged.module if run.averaged is not None else run.model
