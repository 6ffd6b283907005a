"""MultiBox training in the shared loop (Erhan et al. 2014; Szegedy et al. 2014, arXiv 1412.1441): the
`googlenet detect train-multibox` task. The network, its matching loss and its proposals are in
googlenet.detect.multibox, which test time uses without this module."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.ops import box_iou

from googlenet.detect.config import MultiBoxConfig
from googlenet.detect.multibox import BoxTransform, MultiBox, kmeans_priors, matching_loss, top_boxes
from googlenet.evaluate.driver import Evaluator
from googlenet.model import ModelMeta, save_weights
from googlenet.model.weights import MultiBoxHead
from googlenet.train.config import TrainConfig
from googlenet.train.task import WEIGHTS, Parts, Task, TaskContext, input_scaling, model_for
from googlenet.train.tasks import TaskSpec, register_task


def collate_boxes(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Images stacked; each image's boxes kept apart (their numbers differ)."""
    return torch.stack([image for image, _ in items]), [boxes for _, boxes in items]


def _normalised_boxes(data) -> np.ndarray:
    sizes = [np.array([a.width, a.height, a.width, a.height], np.float32) for a in data.annotations]
    return np.concatenate([a.boxes / size for a, size in zip(data.annotations, sizes, strict=True)])


class MultiBoxRecall:
    """Evaluator (reset / process / evaluate) of MultiBox: the matching loss and the recall at IoU 0.5 of each
    image's `top` boxes after NMS at `nms` (IoU is the same in normalised and in pixel coordinates). `reduce`
    sums the running totals over processes."""

    def __init__(self, alpha: float, top: int, nms: float, reduce: Callable[[list[float]], list[float]]) -> None:
        self.alpha, self.top, self.nms, self.reduce = alpha, top, nms, reduce
        self.reset()

    def reset(self) -> None:
        self.loss_sum = self.covered = self.objects = self.count = 0.0

    def process(self, inputs: tuple[torch.Tensor, list[torch.Tensor]], outputs: tuple[torch.Tensor, ...]) -> None:
        """A batch (images, ground-truth boxes per image) and the model's (boxes, confidence logits)."""
        images, truths = inputs
        boxes, logits = outputs
        self.loss_sum += matching_loss(boxes.float(), logits.float(), truths, self.alpha).item() * len(images)
        for b, z, g in zip(boxes, logits, truths, strict=True):
            kept = top_boxes(b, z, self.top, self.nms)
            if len(g) and len(kept):
                self.covered += int((box_iou(g, kept).max(dim=1).values >= 0.5).sum())
            self.objects += len(g)
        self.count += len(images)

    def evaluate(self) -> dict[str, float]:
        loss_sum, covered, objects, count = self.reduce([self.loss_sum, self.covered, self.objects, self.count])
        return {"loss": loss_sum / count, "recall": covered / max(objects, 1), "images": int(count)}


class MultiBoxTask(Task):
    """MultiBox training in the shared loop: VOC-layout data, k-means priors from the training boxes, an
    Inception backbone (from `model.weights`, a classification checkpoint, when given), the matching loss;
    evaluated by the loss and the recall at IoU 0.5 of its top boxes after NMS."""

    name = "multibox"
    joint = True
    raw_keys = ("recall",)
    collate = staticmethod(collate_boxes)

    def build(self, cfg: TrainConfig, start: ModelMeta | None = None) -> Parts:
        from googlenet.data.detection import VOCDetection

        if cfg.data.dataset != "voc":
            raise ValueError("MultiBox trains on detection data: set data.dataset to voc and data.root")
        if not cfg.data.root:
            raise ValueError("data.root is required: a folder in VOC layout (googlenet data scenes makes one)")
        train_set = VOCDetection(cfg.data.root, cfg.data.train_split).limit(cfg.data.train_subset)
        val_set = VOCDetection(cfg.data.root, cfg.data.val_split).limit(cfg.data.val_subset)
        # from model.weights, a classification checkpoint, its classifier kept as it is (MultiBox does not use it)
        classes = None if cfg.model.weights or start else len(train_set.classes)
        backbone = model_for(cfg, classes, start, aux=False)
        mean, std = input_scaling(cfg, backbone.meta)
        m = cfg.section(MultiBoxConfig)
        priors = kmeans_priors(_normalised_boxes(train_set), m.priors, seed=cfg.run.seed)
        size, a = cfg.model.input_size, cfg.augment
        return Parts(
            MultiBox(backbone, torch.from_numpy(priors), m.grid),
            train_set,
            val_set,
            BoxTransform(size, mean, std, True, a.photometric, a.hflip),
            BoxTransform(size, mean, std, False),
            train_set.classes,
            mean,
            std,
            start=backbone.meta,
        )

    def loss(self, net: nn.Module, images: torch.Tensor, targets: Any, cfg: TrainConfig) -> tuple[Any, ...]:
        boxes, logits = net(images)
        truths = [t.to(images.device) for t in targets]
        loss = matching_loss(boxes.float(), logits.float(), truths, cfg.section(MultiBoxConfig).alpha)
        return loss, loss, (boxes, logits)

    def evaluation(
        self, model: nn.Module, data: Dataset, cfg: TrainConfig, ctx: TaskContext
    ) -> tuple[Iterable[Any], Callable[[Any], Any], Evaluator]:
        """Matching loss and the recall at IoU 0.5 of each image's top boxes after NMS, summed over all
        processes."""
        from googlenet.data.loaders import eval_loader

        loader = eval_loader(data, ctx.batch, ctx.rank, ctx.world_size, ctx.workers, collate_fn=collate_boxes)
        batches = ((x.to(ctx.device, ctx.dtype), [t.to(ctx.device) for t in truths]) for x, truths in loader)
        m = cfg.section(MultiBoxConfig)
        return batches, lambda batch: model(batch[0]), MultiBoxRecall(m.alpha, m.top, m.nms, ctx.reduce)

    def export(self, model: nn.Module, parts: Parts, cfg: TrainConfig, out: Path, results: dict[str, Any]) -> None:
        m = cfg.section(MultiBoxConfig)
        meta = ModelMeta(
            variant=cfg.model.name,
            num_classes=cast(MultiBox, model).backbone.num_classes,
            options=dict(width=cfg.model.width),
            input_size=cfg.model.input_size,
            mean=parts.mean,
            std=parts.std,
            class_names=parts.classes,
            metrics={f"{cfg.data.root}/{cfg.data.val_split}": results},
            task="multibox",
            head=MultiBoxHead(priors=m.priors, top=m.top, nms=m.nms, grid=m.grid, tiles=m.tiles),
        )
        save_weights(model, out / WEIGHTS, meta)

    def summary(self, results: dict[str, Any], cfg: TrainConfig) -> str:
        top = cfg.section(MultiBoxConfig).top
        return (
            f"MultiBox on {cfg.data.root} {results['split']}: recall at IoU 0.5 of the top {top} "
            f"boxes {results['recall']:.1%} (raw weights {results['raw_recall']:.1%}), matching loss "
            f"{results['loss']:.3f}, after {results['step']} steps"
        )


MULTIBOX = register_task(TaskSpec("multibox", MultiBoxTask))
