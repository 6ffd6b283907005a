"""Fashion-MNIST from its four IDX files (gzipped or not), found offline or downloaded by torchvision."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Where Debian's dataset-fashion-mnist package puts them (`dpkg -L dataset-fashion-mnist`).
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (http://yann.lecun.com/exdb/mnist/) as a numpy array; `.gz` files are decompressed."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} = {int(np.prod(shape))} values, file has {body.size}")
    return body.reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        for candidate in (directory / name, directory / "raw" / name, directory / "FashionMNIST" / "raw" / name):
            if candidate.is_file():
                return candidate
    return None


def locate(root: str | Path | None, download: bool = True) -> Path:
    """The folder holding the IDX files: `root` when given (it must exist; missing files are downloaded into
    it), else Debian's, else a torchvision download into ./data/fashion-mnist."""
    stems = [stem for pair in FILES.values() for stem in pair]
    if root and not Path(root).is_dir():
        raise FileNotFoundError(f"Fashion-MNIST root {root} does not exist (unset, the system copy is used)")
    candidates = [Path(root)] if root else [DEBIAN_DIR]
    for directory in candidates:
        if all(_find(directory, stem) for stem in stems):
            return directory
    if not download:
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {', '.join(map(str, candidates))}; "
            "install them with `apt-get install dataset-fashion-mnist` or allow the download"
        )
    from torchvision.datasets import FashionMNIST

    target = Path(root or "data/fashion-mnist")
    try:
        FashionMNIST(str(target), train=True, download=True)
        FashionMNIST(str(target), train=False, download=True)
    except Exception as err:  # no network, a proxy, a full disk: all end the same way for the user
        raise FileNotFoundError(
            f"Fashion-MNIST is not installed and could not be downloaded ({err}); "
            "install it with `apt-get install dataset-fashion-mnist`"
        ) from None
    return target


class FashionMNIST(torch.utils.data.Dataset):
    """One split of Fashion-MNIST: (PIL RGB image, label); the grayscale is replicated to 3 channels."""

    classes = CLASSES

    def __init__(self, root: str | Path | None, split: str = "train", download: bool = True) -> None:
        if split not in FILES:
            raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', not {split!r}")
        directory = locate(root, download)
        images_stem, labels_stem = FILES[split]
        images, labels = _find(directory, images_stem), _find(directory, labels_stem)
        assert images is not None and labels is not None  # locate() returns a folder that holds all four files
        self.images = read_idx(images)
        self.targets = read_idx(labels).astype(np.int64)
        if self.images.ndim != 3 or len(self.images) != len(self.targets):
            raise ValueError(f"{directory}: {split} images {self.images.shape} and labels {self.targets.shape} differ")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index], mode="L").convert("RGB"), int(self.targets[index])
