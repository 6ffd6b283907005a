"""The Inception region classifier, fine-tuned R-CNN style (section 8): every proposal window of the training
images, warped with context to the network's input, labelled with the class of the object it overlaps by
IoU >= 0.5 or as background, and drawn into mini-batches of 32 object and 96 background windows."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import v2

from googlenet.data.detection import VOCDetection
from googlenet.data.images import load_image
from googlenet.detect.config import DetectConfig
from googlenet.detect.regions import label_windows, warp_pixels
from googlenet.model import ModelMeta
from googlenet.model.weights import RegionHead
from googlenet.train.classification import Classification
from googlenet.train.config import TrainConfig
from googlenet.train.task import Parts, TaskContext, input_scaling, model_for
from googlenet.train.tasks import TaskSpec, register_task

BACKGROUND = "background"


class Windows(Dataset):
    """Every proposal window of a VOC-layout dataset, plus its ground-truth boxes, with R-CNN's labels
    (0 = background, 1 ... K = the classes); item k is (warped window in [0, 1] (3, S, S), label). Each process
    keeps the images it decodes, up to `cache_bytes`, and converts only the part a window reads."""

    def __init__(
        self,
        data: VOCDetection,
        proposals: list[np.ndarray],
        size: int,
        context: int,
        mean: tuple[float, ...],
        fg_iou: float = 0.5,
        cache_bytes: int = 2 << 30,
    ) -> None:
        self.data, self.size, self.context, self.mean = data, size, context, tuple(mean)
        images, boxes, labels = [], [], []
        for k, (found, annotation) in enumerate(zip(proposals, data.annotations, strict=True)):
            truth_labels = data.labels(k)
            windows = np.concatenate([annotation.boxes, np.asarray(found, np.float32).reshape(-1, 4)])
            boxes.append(windows)
            labels.append(label_windows(windows, annotation.boxes, truth_labels, fg_iou))
            images.append(np.full(len(windows), k))
        self.images = np.concatenate(images) if images else np.zeros(0, np.int64)
        self.boxes = np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)
        self.labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        self.classes = [BACKGROUND, *data.classes]
        self.cache_bytes = cache_bytes
        self._decoded: dict[int, torch.Tensor] = {}  # this process's decoded images (uint8), up to cache_bytes
        self._held = 0

    def image(self, k: int) -> torch.Tensor:
        """Image k decoded, as uint8 (3, H, W): kept in this process while the cache has room, since an epoch
        reads each training image for every one of its hundreds of windows."""
        pixels = self._decoded.get(k)
        if pixels is None:
            pixels = v2.functional.pil_to_tensor(load_image(self.data.image_path(k)))
            if self._held + pixels.numel() <= self.cache_bytes:
                self._decoded[k], self._held = pixels, self._held + pixels.numel()
        return pixels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = self.image(int(self.images[index]))
        box = torch.from_numpy(self.boxes[index : index + 1])
        return warp_pixels(pixels, box, self.size, self.context, self.mean)[0], int(self.labels[index])

    def subset(self, count: int, foreground: float = 0.25, seed: int = 0) -> list[int]:
        """`count` window indices for a fixed evaluation, drawn at random with the training batches' share of
        object windows (all windows when count is 0 or at least the dataset's size)."""
        if not count or count >= len(self):
            return list(range(len(self)))
        fg, bg = np.flatnonzero(self.labels > 0), np.flatnonzero(self.labels == 0)
        fg_n = min(len(fg), round(count * foreground))
        bg_n = min(len(bg), count - fg_n)
        rng = np.random.default_rng(seed)
        chosen = np.concatenate([rng.permutation(fg)[:fg_n], rng.permutation(bg)[:bg_n]])
        return sorted(chosen.tolist())


class BalancedSampler(Sampler):
    """R-CNN's mini-batches: each of `steps` global batches holds `foreground` x batch object windows and the rest
    background, drawn without replacement (cycling once a pool is used up) in an order fixed by (seed, epoch).
    Yields this process's share as (index, epoch) keys, like EpochSampler, and can skip what a resumed run did."""

    def __init__(
        self, labels: np.ndarray, batch: int, foreground: float, steps: int, rank: int, world: int, seed: int
    ) -> None:
        self.fg, self.bg = np.flatnonzero(np.asarray(labels) > 0), np.flatnonzero(np.asarray(labels) == 0)
        self.batch, self.steps, self.rank, self.world, self.seed = batch, steps, rank, world, seed
        self.per_batch_fg = round(foreground * batch)
        if self.per_batch_fg and not len(self.fg):
            raise ValueError("no object windows to train on: no proposal overlaps an object by the IoU threshold")
        if self.per_batch_fg < batch and not len(self.bg):
            raise ValueError("no background windows to train on")
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw(self, pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        if count == 0:
            return np.zeros(0, np.int64)
        rounds = -(-count // len(pool))
        return np.concatenate([rng.permutation(pool) for _ in range(rounds)])[:count]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = self.steps * self.world
        fg_n, bg_n = self.per_batch_fg, self.batch - self.per_batch_fg
        fg = self._draw(self.fg, batches * fg_n, rng).reshape(batches, fg_n)
        bg = self._draw(self.bg, batches * bg_n, rng).reshape(batches, bg_n)
        mine = np.concatenate([fg, bg], axis=1)[self.rank :: self.world].reshape(-1)
        return ((int(i), self.epoch) for i in itertools.islice(mine, self.skip, None))

    def __len__(self) -> int:
        return self.steps * self.batch - self.skip


def window_transform(mean, std, train: bool, photometric: float = 0.0, hflip: bool = True) -> v2.Compose:
    """A warped window in [0, 1] -> the network's input: in training random flips and photometric jitter."""
    steps = []
    if train and hflip:
        steps.append(v2.RandomHorizontalFlip())
    if train and photometric > 0:
        steps.append(v2.ColorJitter(brightness=photometric, contrast=photometric, saturation=photometric))
    return v2.Compose([*steps, v2.Normalize(mean=list(mean), std=list(std))])


def training_proposals(data: VOCDetection, method: str, workers: int) -> list[np.ndarray]:
    """The cached proposals of `method` for every image of `data` (computed and cached when missing)."""
    from googlenet.detect.proposals import PROPOSERS, dataset_proposals

    if method not in PROPOSERS or PROPOSERS[method].sources:
        raise ValueError(f"detect.proposals must be one of {', '.join(PROPOSERS)} (not a union), not {method!r}")
    return dataset_proposals(data, method, workers=workers)[method][0]


class RegionTask(Classification):
    """The region classifier in the shared loop: a classification network over K + 1 classes (background
    first), started from a classification checkpoint, trained on `Windows` with `BalancedSampler` batches and
    evaluated by window accuracy on a fixed set of validation windows."""

    name = "regions"

    def build(self, cfg: TrainConfig, start: ModelMeta | None = None) -> Parts:
        if cfg.data.dataset != "voc" or not cfg.data.root:
            raise ValueError("the region classifier trains on detection data: set data.dataset voc and data.root")
        d = cfg.section(DetectConfig)
        train_data = VOCDetection(cfg.data.root, cfg.data.train_split).limit(cfg.data.train_subset)
        model = model_for(cfg, len(train_data.classes) + 1, start)
        mean, std = input_scaling(cfg, model.meta)
        sets = []
        for data in (train_data, VOCDetection(cfg.data.root, cfg.data.val_split).limit(cfg.data.val_subset)):
            found = training_proposals(data, d.proposals, max(cfg.data.workers, 1))
            sets.append(Windows(data, found, cfg.model.input_size, d.context, mean, d.fg_iou))
        train_set, val_windows = sets
        val_set = torch.utils.data.Subset(val_windows, val_windows.subset(d.val_windows, d.foreground, cfg.run.seed))
        a = cfg.augment
        return Parts(
            model,
            train_set,
            val_set,
            window_transform(mean, std, True, a.photometric, a.hflip),
            window_transform(mean, std, False),
            train_set.classes,
            mean,
            std,
            start=model.meta,
        )

    def epoch_size(self, train_set: Dataset, cfg: TrainConfig) -> int:
        """An epoch shows every object window once, with background windows in the configured proportion."""
        fg = int((cast(Windows, train_set).labels > 0).sum())
        return round(fg / cfg.section(DetectConfig).foreground)

    def sampler(self, train_set: Dataset, cfg: TrainConfig, ctx: TaskContext, steps: int) -> BalancedSampler:
        foreground = cfg.section(DetectConfig).foreground
        labels = cast(Windows, train_set).labels
        return BalancedSampler(labels, ctx.batch, foreground, steps, ctx.rank, ctx.world_size, ctx.seed)

    def metadata(self, parts: Parts, cfg: TrainConfig, results: dict[str, Any]) -> ModelMeta:
        d = cfg.section(DetectConfig)
        return dataclasses.replace(
            super().metadata(parts, cfg, results),
            metrics={f"{cfg.data.root}/{cfg.data.val_split}/windows": results},
            task="regions",
            head=RegionHead(context=d.context, proposals=d.proposals, fg_iou=d.fg_iou),
        )

    def summary(self, results: dict[str, Any], cfg: TrainConfig) -> str:
        return (
            f"region classifier on {cfg.data.root} {results['split']} windows: accuracy {results['top1']:.2%} "
            f"(raw weights {results['raw_top1']:.2%}) over {results['images']} windows, after {results['step']} steps"
        )


REGIONS = register_task(TaskSpec("regions", RegionTask))
