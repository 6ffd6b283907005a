"""ILSVRC-2012 as it is distributed: the official archives and devkit (read by torchvision.datasets.ImageNet),
Kaggle's layout (train/<wnid>/, a flat val/ and LOC_val_solution.csv), or the extracted <wnid>/ folders; with the
class names and wnids."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchvision.datasets import ImageFolder

from googlenet.model.caffe import imagenet_classes, imagenet_wnids

ARCHIVES = ("ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
SOLUTION, SYNSETS = "LOC_val_solution.csv", "LOC_synset_mapping.txt"  # Kaggle's ground truth and class names
KAGGLE_IMAGES = Path("ILSVRC/Data/CLS-LOC")  # where Kaggle's archive keeps train/, val/ and test/


class ImageNetSplit:
    """One split of ILSVRC-2012: (image, class index) items, classes in sorted-wnid order (the order of Caffe's
    synsets and torchvision's weights), `classes` their names and `class_ids` their wnids."""

    def __init__(self, samples: list[tuple[str, int]], wnids: list[str], names: list[str], loader: Callable) -> None:
        self.samples, self.class_ids, self.classes, self.loader = samples, wnids, names, loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        return self.loader(path), label


def class_names(wnids: list[str], words: dict[str, str]) -> list[str]:
    """A name per wnid: ILSVRC-2012's as every ImageNet model here names them (torchvision's list), else the first
    of the dataset's own words for it, else the wnid."""
    known = dict(zip(imagenet_wnids(), imagenet_classes(), strict=True))
    return [known.get(w) or words.get(w, w).split(",")[0].strip() or w for w in wnids]


def imagenet(root: str | None, split: str, loader: Callable) -> ImageNetSplit:
    """`split` (train, or val; test also means val, ILSVRC-2012's test labels being unpublished) of ILSVRC-2012 in
    `root`, in whichever layout it is:

    - the official archives (ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz):
      torchvision.datasets.ImageNet checks their md5, extracts them once into root/train and root/val, and maps
      the validation ground truth (ILSVRC2012_IDs, which are not in wnid order) to wnids through meta.mat;
    - Kaggle's (LOC_val_solution.csv and LOC_synset_mapping.txt beside ILSVRC/Data/CLS-LOC/, or beside train/
      and val/): train/<wnid>/*.JPEG, val/ flat, its labels the first wnid of each row of the CSV;
    - already extracted: root/train/<wnid>/ and root/val/<wnid>/.
    """
    if not root:
        raise ValueError("data.root is required for imagenet: the folder with ILSVRC-2012's archives or folders")
    split = "val" if split == "test" else split  # its test labels are unpublished: results are on val
    if split not in ("train", "val"):
        raise ValueError(f"ILSVRC-2012 has the splits train and val (test: val), not {split!r}")
    base = Path(root)
    if (base / ARCHIVES[0]).is_file() or (base / "meta.bin").is_file():
        return _official(base, split, loader)
    if (base / SOLUTION).is_file():
        return _kaggle(base, split, loader)
    if (base / split).is_dir():
        folder = ImageFolder(str(base / split), loader=loader)
        return ImageNetSplit(folder.samples, folder.classes, class_names(folder.classes, {}), loader)
    raise FileNotFoundError(
        f"{root} holds no ILSVRC-2012: expected its archives ({', '.join(ARCHIVES)}), Kaggle's {SOLUTION} with "
        f"{KAGGLE_IMAGES}/, or {split}/<wnid>/ folders"
    )


def _official(base: Path, split: str, loader: Callable) -> ImageNetSplit:
    from torchvision.datasets import ImageNet

    try:
        data = ImageNet(str(base), split, loader=loader)  # md5 checks, extraction once, ground truth by wnid
    except RuntimeError as err:  # an archive missing or not ILSVRC-2012's
        raise ValueError(f"{str(err).split('. ')[0]} (its md5 is not ILSVRC-2012's)") from None
    words = {wnid: ", ".join(names) for wnid, names in zip(data.wnids, data.classes, strict=True)}
    return ImageNetSplit(data.samples, list(data.wnids), class_names(list(data.wnids), words), loader)


def _kaggle(base: Path, split: str, loader: Callable) -> ImageNetSplit:
    images = base / KAGGLE_IMAGES if (base / KAGGLE_IMAGES).is_dir() else base
    train = images / "train"
    if not train.is_dir():
        raise FileNotFoundError(f"{base} has {SOLUTION} but no {train}/ (Kaggle's layout: {KAGGLE_IMAGES}/train)")
    wnids = sorted(p.name for p in train.iterdir() if p.is_dir())
    words = {}
    if (base / SYNSETS).is_file():
        for line in (base / SYNSETS).read_text().splitlines():
            wnid, _, text = line.partition(" ")
            words[wnid] = text
    if split == "train":
        folder = ImageFolder(str(train), loader=loader)
        return ImageNetSplit(folder.samples, wnids, class_names(wnids, words), loader)
    index = {w: i for i, w in enumerate(wnids)}
    samples = []
    with open(base / SOLUTION, newline="") as f:
        for row in csv.DictReader(f):
            wnid = row["PredictionString"].split()[0]
            if wnid not in index:
                raise ValueError(f"{SOLUTION}: {row['ImageId']} is labelled {wnid}, which has no train/ folder")
            samples.append((str(images / "val" / f"{row['ImageId']}.JPEG"), index[wnid]))
    return ImageNetSplit(sorted(samples), wnids, class_names(wnids, words), loader)
