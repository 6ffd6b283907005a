"""The classification task of section 6: GoogLeNet trained on an image dataset with the main and auxiliary
losses, evaluated by loss, top-1 and top-5, exported with its metadata record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from googlenet.data import build_dataset, eval_loader, eval_transform, train_transform
from googlenet.data.transforms import TrainAugmentation
from googlenet.evaluate.driver import Evaluator
from googlenet.evaluate.metrics import TopK, topk_correct
from googlenet.model import ModelMeta, build_model, save_weights
from googlenet.train.config import TrainConfig
from googlenet.train.task import WEIGHTS, Parts, Task, TaskContext, input_scaling, model_for
from googlenet.train.tasks import TaskSpec, register_task


def compute_loss(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, aux_weight: float):
    """Main cross-entropy plus `aux_weight` times each auxiliary head's (section 5). Returns (loss, main, logits)."""
    if aux_weight == 0:
        logits = net(images)
        main = F.cross_entropy(logits, targets)
        return main, main, logits
    out = net(images, return_aux=True)
    main = F.cross_entropy(out.logits, targets)
    aux = F.cross_entropy(out.aux1, targets) + F.cross_entropy(out.aux2, targets)
    return main + aux_weight * aux, main, out.logits


def training_transforms(
    cfg: TrainConfig, mean: Sequence[float], std: Sequence[float]
) -> tuple[TrainAugmentation, Callable]:
    """The training and evaluation transforms a config asks for, normalising with `mean` and `std`."""
    size = cfg.model.input_size
    train_tf = train_transform(size, mean, std, **dataclasses.asdict(cfg.augment))  # the section's fields, by name
    return train_tf, eval_transform(size, mean, std, cfg.data.crop_pct)


class Classification(Task):
    """Image classification (the paper's ILSVRC task): a GoogLeNet over the dataset's classes, fresh or from
    model.weights, trained with the main loss plus 0.3 x each auxiliary loss."""

    name = "classify"
    raw_keys: tuple[str, ...] = ("top1", "top5")

    def build(self, cfg: TrainConfig, start: ModelMeta | None = None) -> Parts:
        """Datasets, transforms and a fresh model (built under the run's init seed)."""
        train_set = build_dataset(
            cfg.data.dataset, cfg.data.root, cfg.data.train_split, cfg.data.train_subset, decode=False
        )
        val_set = build_dataset(cfg.data.dataset, cfg.data.root, cfg.data.val_split, cfg.data.val_subset)
        if len(train_set) < cfg.data.batch_size:
            raise ValueError(f"{len(train_set)} training images are fewer than one batch of {cfg.data.batch_size}")
        model = model_for(cfg, len(train_set.classes), start)
        mean, std = input_scaling(cfg, model.meta)
        train_tf, eval_tf = training_transforms(cfg, mean, std)
        classes, ids = list(train_set.classes), getattr(train_set, "class_ids", None)
        return Parts(
            model, train_set, val_set, train_tf, eval_tf, classes, mean, std, train_tf.on_device, ids, model.meta
        )

    def loss(self, net: nn.Module, images: torch.Tensor, targets: Any, cfg: TrainConfig) -> tuple[Any, ...]:
        """(loss to minimise, main loss, output) for one batch."""
        targets = targets.to(images.device, non_blocking=True)
        return compute_loss(net, images, targets, cfg.optim.aux_weight)

    def batch_stats(self, output: Any, targets: Any) -> dict[str, float]:
        """Sums over this process's batch, logged as fractions of the global batch."""
        return {"batch_top1": topk_correct(output.float(), targets.to(output.device), (1,))[1]}

    def evaluation(
        self, model: nn.Module, data: Dataset, cfg: TrainConfig, ctx: TaskContext
    ) -> tuple[Iterable[Any], Callable[[Any], Any], Evaluator]:
        """Loss, top-1 and top-5 accuracy (fractions) of `model` on `data`, summed over all processes."""
        pin = ctx.device.type == "cuda"
        loader = eval_loader(data, ctx.batch * 2, ctx.rank, ctx.world_size, ctx.workers, pin_memory=pin)
        batches = ((ctx.to_device(x), y.to(ctx.device, non_blocking=True)) for x, y in loader)

        def logits(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            with ctx.autocast():
                return model(batch[0]).float()

        return batches, logits, TopK(ctx.reduce)

    def export(self, model: nn.Module, parts: Parts, cfg: TrainConfig, out: Path, results: dict[str, Any]) -> None:
        """The inference weights (`model` without its aux heads) with their metadata record."""
        exported = build_model(cfg.model.name, num_classes=len(parts.classes), width=cfg.model.width, aux=False)
        exported.load_state_dict(model.state_dict(), strict=False)  # aux heads are left behind
        save_weights(exported, out / WEIGHTS, self.metadata(parts, cfg, results))

    def metadata(self, parts: Parts, cfg: TrainConfig, results: dict[str, Any]) -> ModelMeta:
        """The metadata record saved with the inference weights."""
        return ModelMeta(
            variant=cfg.model.name,
            num_classes=len(parts.classes),
            options=dict(width=cfg.model.width),
            input_size=cfg.model.input_size,
            mean=parts.mean,
            std=parts.std,
            crop_pct=cfg.data.crop_pct,
            class_names=parts.classes,
            class_ids=parts.class_ids,
            metrics={f"{cfg.data.dataset}/{cfg.data.val_split}": results},
        )

    def summary(self, results: dict[str, Any], cfg: TrainConfig) -> str:
        return (
            f"{cfg.data.dataset} {results['split']}: top-1 {results['top1']:.2%}  top-5 {results['top5']:.2%}  "
            f"(Polyak-averaged weights; raw weights top-1 {results['raw_top1']:.2%}) after {results['step']} steps"
        )


CLASSIFY = register_task(TaskSpec("classify", Classification))
