"""Datasets, the paper's augmentation and reproducible loaders."""

from googlenet.data.loaders import (
    Augmented,
    EpochSampler,
    SkipUnreadable,
    Transformed,
    build_dataset,
    eval_loader,
    train_loader,
    unreadable,
)
from googlenet.data.transforms import TrainAugmentation, eval_transform, train_transform, transforms_for

__all__ = [
    "Augmented",
    "EpochSampler",
    "SkipUnreadable",
    "TrainAugmentation",
    "Transformed",
    "build_dataset",
    "eval_loader",
    "eval_transform",
    "train_loader",
    "train_transform",
    "transforms_for",
    "unreadable",
]
