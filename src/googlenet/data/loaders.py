"""Datasets by name, and loaders whose augmentation is reproducible per sample (for exact resume and DDP)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import ImageFolder

from googlenet.data.fashion_mnist import FashionMNIST
from googlenet.data.images import load_image


def build_dataset(name: str, root: str | None, split: str, subset: int = 0) -> Dataset:
    """A split of `imagefolder` (root/split/<class>/*.jpg) or `fashion_mnist`; yields (PIL image, label).

    The dataset's `classes` attribute lists the class names.
    """
    if name == "fashion_mnist":
        dataset = FashionMNIST(root, split)
    elif name == "imagefolder":
        if not root:
            raise ValueError("data.root is required for imagefolder datasets")
        folder = Path(root) / split
        if not folder.is_dir():
            raise FileNotFoundError(f"no {split}/ folder in {root} (ImageFolder layout: root/{split}/<class>/...)")
        dataset = ImageFolder(str(folder), loader=load_image)  # any mode (16-bit, palette, ...) as RGB
    else:
        raise ValueError(f"unknown dataset {name!r}; choose imagefolder or fashion_mnist")
    classes = list(dataset.classes)
    if subset:
        dataset = Subset(dataset, range(min(subset, len(dataset))))
        dataset.classes = classes
    return dataset


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample in one epoch: independent of worker, process and batch order."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) * 2_147_483_647 + index


class Augmented(Dataset):
    """`dataset` with a random `transform` whose randomness depends only on (seed, epoch, index).

    Items are addressed by (index, epoch) keys, as EpochSampler yields them, so a resumed run or a run
    over N processes augments each sample exactly as an uninterrupted single-process run does.
    """

    def __init__(self, dataset: Dataset, transform: Callable, seed: int, joint: bool = False) -> None:
        self.dataset, self.transform, self.seed, self.joint = dataset, transform, seed, joint

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, Any]:
        index, epoch = key
        image, label = self.dataset[index]
        with torch.random.fork_rng(devices=[]):  # leaves the caller's RNG (dropout) untouched
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return _apply(self.transform, image, label, self.joint)


def _apply(transform: Callable, image: Any, target: Any, joint: bool) -> tuple[Any, Any]:
    """`transform` of the image, or with `joint` of (image, target) together (boxes that follow a flip)."""
    return transform(image, target) if joint else (transform(image), target)


class Transformed(Dataset):
    """`dataset` with a deterministic transform (evaluation)."""

    def __init__(self, dataset: Dataset, transform: Callable, joint: bool = False) -> None:
        self.dataset, self.transform, self.joint = dataset, transform, joint

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, label = self.dataset[index]
        return _apply(self.transform, image, label, self.joint)


class EpochSampler(DistributedSampler):
    """DistributedSampler that yields (index, epoch) keys and can skip the batches a resumed run has done."""

    skip = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = itertools.islice(super().__iter__(), self.skip, None)
        return ((index, self.epoch) for index in indices)

    def __len__(self) -> int:
        return super().__len__() - self.skip


def train_loader(
    dataset: Augmented,
    batch_size: int,
    rank: int,
    world: int,
    workers: int,
    seed: int,
    pin_memory: bool = False,
    collate_fn: Callable | None = None,
    sampler: EpochSampler | None = None,
) -> tuple[DataLoader, EpochSampler]:
    """Batches of `batch_size` per process in `sampler`'s order (default: shuffled, this process's share;
    incomplete last batches dropped)."""
    if sampler is None:
        sampler = EpochSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG out of the loader
    )
    return loader, sampler


def eval_loader(
    dataset: Dataset,
    batch_size: int,
    rank: int,
    world: int,
    workers: int,
    pin_memory: bool = False,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """This process's share of `dataset` (every world-th sample, no padding), in order."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(range(rank, len(dataset), world)),
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(0),
    )
