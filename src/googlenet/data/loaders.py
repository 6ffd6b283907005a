"""Datasets by name (`DATASETS`, the registry of layouts), and loaders whose augmentation is reproducible per
sample (for exact resume and DDP)."""

from __future__ import annotations

import itertools
import json
import random
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import ImageFolder

from googlenet.data.fashion_mnist import FashionMNIST
from googlenet.data.images import UnreadableImage, load_image, read_encoded
from googlenet.registry import Registry


class ImageDataset(Protocol):
    """A classification dataset as `build_dataset` and `dataset_for` return it: (PIL image, class index) items
    and the class names."""

    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Any, int]: ...


@dataclass(frozen=True)
class DatasetLayout:
    """A way datasets are laid out on disk, by name (`data.dataset`, `--data`): `build` (root, split, loader) ->
    a dataset of (image, class index) items with `classes` (and `class_ids` where it has them); `loader` reads
    one file (decoded, or its bytes for training's augmentation). `needs_root`: the layout is a folder, so
    `evaluate --data FOLDER` means root FOLDER's parent and split its name."""

    name: str
    help: str
    build: Callable[[str | None, str, Callable[[str], Any]], Any]
    needs_root: bool = True


DATASETS: Registry[DatasetLayout] = Registry("dataset layout")


def register_dataset(layout: DatasetLayout) -> DatasetLayout:
    """Add a dataset layout (usable as data.dataset and, where it needs no root, as --data NAME)."""
    return DATASETS.register(layout.name, layout)


def _image_folder(root: str | None, split: str, loader: Callable[[str], Any]) -> Any:
    if not root:
        raise ValueError("data.root is required for imagefolder datasets")
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no {split}/ folder in {root} (ImageFolder layout: root/{split}/<class>/...)")
    return ImageFolder(str(folder), loader=loader)


def _imagenet(root: str | None, split: str, loader: Callable[[str], Any]) -> Any:
    from googlenet.data.imagenet import imagenet

    return imagenet(root, split, loader)


def _detection(root: str | None, split: str, loader: Callable[[str], Any]) -> Any:
    raise ValueError(
        "voc is detection data (boxes, not one class per image): the detection commands read it (googlenet "
        "detect train, train-multibox, evaluate)"
    )


for _layout in (
    DatasetLayout("imagefolder", "root/train, root/val, one folder per class", _image_folder),
    DatasetLayout("imagenet", "ILSVRC-2012's archives, Kaggle's layout or wnid folders", _imagenet),
    DatasetLayout(
        "fashion_mnist", "empty root = Debian's package, else a download", lambda r, s, _: FashionMNIST(r, s), False
    ),
    DatasetLayout("voc", "detection: PASCAL VOC layout", _detection),
):
    register_dataset(_layout)


def build_dataset(name: str, root: str | None, split: str, subset: int = 0, decode: bool = True) -> ImageDataset:
    """A split of a registered layout (`DATASETS`): `imagefolder` (root/split/<class>/*.jpg), `imagenet`
    (ILSVRC-2012 as distributed, see `googlenet.data.imagenet`), `fashion_mnist`, or one registered with
    `register_dataset`; yields (PIL image, label), or with `decode` False the files' bytes (`EncodedImage`) where
    the data are files, for training's augmentation to decode.

    The dataset's `classes` attribute lists the class names (and `class_ids` the wnids, for ImageNet).
    """
    loader = load_image if decode else read_encoded  # load_image: any mode (16-bit, palette, ...) as RGB
    dataset = DATASETS.get_part(name).build(root, split, loader)
    classes = list(dataset.classes)
    if subset:
        part = Subset(dataset, range(min(subset, len(dataset))))
        part.classes = classes  # type: ignore[attr-defined]  # torch's Subset declares no `classes`; ours carries it
        part.class_ids = getattr(dataset, "class_ids", None)  # type: ignore[attr-defined]
        return cast(ImageDataset, part)
    return cast(ImageDataset, dataset)


class SkipUnreadable(Dataset):
    """`dataset` whose unreadable items (a damaged, truncated, empty or missing image file) are replaced by
    another item, drawn from a generator seeded by the index (so runs stay exactly reproducible), instead of
    stopping the run. Each one is warned about on stderr, naming the file, and appended to `log` as a JSON line
    {split, index, path, error}: one file that all DataLoader workers and processes share (`unreadable`
    reads it back)."""

    attempts = 50  # replacements tried for one item before the data is judged mostly bad

    def __init__(self, dataset: Dataset, log: str | Path, split: str) -> None:
        self.dataset, self.log, self.split = dataset, Path(log), split
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))  # map-style datasets are sized; torch's Dataset type is not

    def __getitem__(self, index: int) -> Any:
        return self.get(index, lambda item: item)

    def get(self, index: int, use: Callable[[Any], Any]) -> Any:
        """`use(item)` of item `index`, or of its replacement where it is unreadable: when it is read, or when
        `use` decodes it (training's augmentation decodes a file's bytes at the scale its crop needs)."""
        draw, candidate = random.Random(index), index
        for _ in range(self.attempts):
            try:
                return use(self.dataset[candidate])
            except (UnreadableImage, FileNotFoundError) as err:
                self._record(candidate, err)
                last = err
            candidate = draw.randrange(len(cast(Sized, self.dataset)))
        raise ValueError(f"{self.attempts} {self.split} items in a row were unreadable, the last: {last}")

    def _record(self, index: int, err: Exception) -> None:
        print(f"warning: skipped an unreadable {self.split} item: {err}", file=sys.stderr)  # from any worker
        path = getattr(err, "path", None) or str(err)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as f:  # one short write in append mode: lines from many processes stay whole
            f.write(json.dumps({"split": self.split, "index": index, "path": path, "error": str(err)}) + "\n")


def unreadable(log: str | Path) -> dict[str, dict[int, str]]:
    """{split: {index: path}} of the items that `SkipUnreadable` skipped (a line cut short by a kill is ignored)."""
    found: dict[str, dict[int, str]] = {}
    if not Path(log).is_file():
        return found
    for line in Path(log).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        found.setdefault(record["split"], {})[record["index"]] = record["path"]
    return found


WORKER_GRACE_S = 30  # SLURM's default time between SIGTERM and SIGKILL


def leave_stop_signals_to_main(worker_id: int) -> None:
    """DataLoader workers leave SIGINT and SIGTERM to the main process, which checkpoints and then ends them.

    A SIGTERM sent to every process of a job (as SLURM does on preemption) would otherwise kill the workers
    at once and the main process with them, before it checkpoints; here it gives a worker WORKER_GRACE_S seconds more
    (SIGALRM then ends it), which also bounds how long a stuck worker can outlive a terminate().
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda number, frame: signal.alarm(WORKER_GRACE_S))
    cv2.setNumThreads(1)  # one core per worker, as PyTorch sets for its own threads there


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
        return len(cast(Sized, self.dataset))  # map-style datasets are sized; torch's Dataset type is not

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, Any]:
        index, epoch = key

        def augment(item: tuple[Any, Any]) -> tuple[Any, Any]:
            with torch.random.fork_rng(devices=[]):  # leaves the caller's RNG (dropout) untouched
                torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))  # CPU only: cheap
                return _apply(self.transform, item[0], item[1], self.joint)

        if isinstance(self.dataset, SkipUnreadable):  # a file found damaged while decoding is replaced too
            return self.dataset.get(index, augment)
        return augment(self.dataset[index])


def _apply(transform: Callable, image: Any, target: Any, joint: bool) -> tuple[Any, Any]:
    """`transform` of the image, or with `joint` of (image, target) together (boxes that follow a flip)."""
    return transform(image, target) if joint else (transform(image), target)


class Transformed(Dataset):
    """`dataset` with a deterministic transform (evaluation)."""

    def __init__(self, dataset: Dataset, transform: Callable, joint: bool = False) -> None:
        self.dataset, self.transform, self.joint = dataset, transform, joint

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))  # map-style datasets are sized; torch's Dataset type is not

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


class KeyedSampler(Protocol):
    """The order of one process's training samples: (index, epoch) keys, `set_epoch`, and a `skip` of the first
    samples a resumed run has done (EpochSampler, and the region classifier's BalancedSampler)."""

    skip: int

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[tuple[int, int]]: ...

    def __len__(self) -> int: ...


def train_loader(
    dataset: Augmented,
    batch_size: int,
    rank: int,
    world: int,
    workers: int,
    seed: int,
    pin_memory: bool = False,
    collate_fn: Callable | None = None,
    sampler: KeyedSampler | None = None,
) -> tuple[DataLoader, KeyedSampler]:
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
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG out of the loader
        worker_init_fn=leave_stop_signals_to_main,
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
        sampler=list(range(rank, len(cast(Sized, dataset)), world)),
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=leave_stop_signals_to_main,
    )


_FORBIDDEN = re.compile(r'[\\/:*?"<>|\s]+')  # what file systems refuse in a folder name (and white space)


def _key(name: str) -> str:
    return _FORBIDDEN.sub("_", name).strip("_").lower()


def class_order(
    folders: list[str], classes: list[str], ids: list[str] | None = None, kind: str = "folder"
) -> list[int]:
    """For each class folder (ImageFolder's, sorted), the index of the model class it holds: the same name up to
    case and the characters a file system forbids (T-shirt/top in T-shirt_top/), also after that class's index
    and "_" (0_T-shirt_top/); ILSVRC's wnid folders (n01440764/, ...), all of them, are the classes in order
    (Caffe's and torchvision's class order is the sorted wnids'); with the classes' `ids` (the model's wnids),
    folders named by id, any of them, are those classes. (Also for other lists of class names, e.g. a detection
    dataset's: `kind` names them in the errors.)"""
    by_id = {c: i for i, c in enumerate(ids or [])}
    if by_id and all(f in by_id for f in folders):
        return [by_id[f] for f in folders]
    if len(folders) == len(classes) and all(re.fullmatch(r"n\d{8}", f) for f in folders):
        return list(range(len(folders)))
    index = {_key(c): i for i, c in enumerate(classes)}
    order, unmatched = [], []
    for folder in folders:
        key = _key(folder)
        numbered = re.fullmatch(r"(\d+)_(.+)", key)
        if key in index:
            order.append(index[key])
        elif numbered and index.get(numbered.group(2)) == int(numbered.group(1)):
            order.append(int(numbered.group(1)))
        else:
            unmatched.append(folder)
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} {kind}(s) match none of the model's {len(classes)} classes, e.g. "
            f"{', '.join(unmatched[:3])} (its classes: {', '.join(classes[:3])}, ...)"
        )
    if len(set(order)) != len(order):
        raise ValueError(f"two {kind}s hold the same class of the model")
    return order


class Relabelled(Dataset):
    """An ImageFolder's items with their labels as the model's class indices (`order[folder index]`), and the
    model's class names."""

    def __init__(self, dataset: ImageDataset, order: list[int], classes: list[str]) -> None:
        self.dataset, self.order, self.classes = dataset, order, list(classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        return image, self.order[label]


def dataset_for(
    data: str,
    split: str = "test",
    root: str | None = None,
    classes: list[str] | None = None,
    ids: list[str] | None = None,
) -> ImageDataset:
    """A registered layout that needs no folder, by name (`fashion_mnist`: its `split`, read from `root` or found
    as in training), or the path of an ImageFolder split: a folder with one subfolder of images per class (e.g.
    ImageNet's val/)."""
    if data in DATASETS and not DATASETS[data].needs_root:
        return build_dataset(data, root, split)
    folder = Path(data)
    if not folder.is_dir():
        named = ", ".join(name for name, layout in DATASETS.items() if not layout.needs_root)
        raise FileNotFoundError(f"--data {data}: not a folder (ImageFolder: <class>/<image>) nor one of {named}")
    dataset = build_dataset("imagefolder", str(folder.parent), folder.name)
    if classes is None or list(dataset.classes) == list(classes):
        return dataset
    return cast(ImageDataset, Relabelled(dataset, class_order(list(dataset.classes), classes, ids), classes))
