"""Published weights by name (`PUBLISHED`: entries, not code): `bvlc` (BVLC's Caffe GoogLeNet), `torchvision`
(its IMAGENET1K_V1) and `places365` (CSAIL's GoogLeNet-Places365): where each file comes from, its hash, how it
becomes our .safetensors and what its record says; resolved to a checked local file before anything is read
(`resolve`, `read_weights`). A file placed in torch.hub's cache is checked like a download, and a cached
conversion records its source's hash, so a changed source is converted again. Also `googlenet weights import`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from googlenet.model.caffe import BVLC_SHA1, imagenet_wnids, read_caffemodel, read_mean, sha1
from googlenet.model.meta import ModelMeta
from googlenet.model.weights import read_file, read_record, write_weights


@dataclass(frozen=True)
class Published:
    """One set of published weights: `file` in torch.hub's checkpoints folder, downloaded from `url`, checked
    by `algorithm` against `digest` (torch.hub's files name a sha256 prefix); `convert` (source, its full hex
    digest, target) writes our .safetensors as `converted` beside it, or None where our reader reads the file
    as it is."""

    name: str
    description: str
    file: str
    url: str
    algorithm: str
    digest: str  # "" where the publisher gives none: the file's hash is then only recorded in the conversion
    convert: Callable[[Path, str, Path], Path] | None = None
    converted: str | None = None
    companions: tuple[tuple[str, str], ...] = ()  # (file, url) the conversion reads beside the weights


def _torchvision_convert(source: Path, digest: str, target: Path) -> Path:
    """torchvision's IMAGENET1K_V1 state_dict in the googlenet_tv layout (transform_input on, auxiliary heads
    left out), with ImageNet's names and normalisation and the source's hash in the record."""
    from torchvision.models import GoogLeNet_Weights

    state, _ = read_file(source)  # a torchvision state_dict is renamed to our layout on reading
    meta = ModelMeta(
        variant="googlenet_tv",
        num_classes=1000,
        options={"transform_input": True, "aux": False},
        class_names=list(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]),
        class_ids=imagenet_wnids(),
        metrics={"imagenet-1k/val (torchvision's docs)": {"top1": 0.69778, "top5": 0.8953}},
        source={"file": source.name, "sha256": digest},
    )
    return write_weights({k: v for k, v in state.items() if not k.startswith("aux")}, target, meta)


def _places365_convert(source: Path, digest: str, target: Path) -> Path:
    """CSAIL's GoogLeNet-Places365 (BVLC's prototxt with 365 outputs) as the paper variant: the 365 scene
    categories' names from categories_places365.txt and the per-channel mean of places365CNN_mean.binaryproto,
    both beside it; the source's sha256 in the record."""
    state, meta = read_caffemodel(source)
    lines = (source.parent / "categories_places365.txt").read_text().split("\n")
    names = [line.split()[0][3:] for line in lines if line.strip()]  # "/a/airfield 0" -> "airfield"
    if len(names) != meta.num_classes:
        raise ValueError(f"{source}: {meta.num_classes} classes, but categories_places365.txt names {len(names)}")
    b, g, r = read_mean(source.parent / "places365CNN_mean.binaryproto")
    meta.class_names, meta.class_ids, meta.metrics = names, None, {}
    meta.mean = (r / 255, g / 255, b / 255)
    meta.source = {"file": source.name, "sha256": digest}
    return write_weights(state, target, meta)


_PLACES = "http://places2.csail.mit.edu/models_places365/"
_PLACES_GITHUB = "https://raw.githubusercontent.com/CSAILVision/places365/master/"

PUBLISHED: dict[str, Published] = {
    "bvlc": Published(
        "bvlc",
        "BVLC's Caffe GoogLeNet (models/bvlc_googlenet): the paper's network, ImageNet",
        "bvlc_googlenet.caffemodel",
        "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",
        "sha1",
        BVLC_SHA1,
    ),
    "torchvision": Published(
        "torchvision",
        "torchvision's GoogLeNet_Weights.IMAGENET1K_V1 in the googlenet_tv layout",
        "googlenet-1378be20.pth",
        "https://download.pytorch.org/models/googlenet-1378be20.pth",
        "sha256",
        "1378be20",
        _torchvision_convert,
        "googlenet_tv-imagenet1k_v1.safetensors",
    ),
    "places365": Published(
        "places365",
        "CSAIL's GoogLeNet trained on Places365-Standard (365 scene categories), the paper's network",
        "googlenet_places365.caffemodel",
        _PLACES + "googlenet_places365.caffemodel",
        "sha256",
        "",  # CSAIL publishes no hash: the sha256 of the file used is recorded in the conversion
        _places365_convert,
        "googlenet_places365.safetensors",
        (
            ("categories_places365.txt", _PLACES_GITHUB + "categories_places365.txt"),
            ("places365CNN_mean.binaryproto", _PLACES_GITHUB + "places365CNN_mean.binaryproto"),
        ),
    ),
}
NAMES = tuple(PUBLISHED)


def checkpoints() -> Path:
    """torch.hub's checkpoints folder, where published weights are downloaded to (or placed by hand)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _digest(path: Path, algorithm: str) -> str:
    if algorithm == "sha1":
        return sha1(path)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(name: str, file: str, url: str) -> Path:
    """`file` in torch.hub's checkpoints folder, downloaded from `url` where it is missing."""
    target = checkpoints() / file
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=True)
        except Exception as err:  # no network, a proxy, a full disk: the user is told the same thing
            raise FileNotFoundError(
                f"could not download {name} weights ({type(err).__name__}); put {file} ({url}) at {target}"
            ) from None
    return target


def _fetch(entry: Published) -> tuple[Path, str]:
    """The entry's source file (and its companions), downloaded where missing, and its full digest; a file with
    another hash than the published one (downloaded or placed by hand) is a one-line ValueError."""
    target = _download(entry.name, entry.file, entry.url)
    for file, url in entry.companions:
        _download(entry.name, file, url)
    digest = _digest(target, entry.algorithm)
    if not digest.startswith(entry.digest):
        raise ValueError(
            f"{target} has {entry.algorithm} {digest}, not the published {entry.digest}: delete it and download it "
            "again"
        )
    return target, digest


def _converted_from(path: Path, digest: str) -> bool:
    """Whether the conversion at `path` was made from the source whose hash is `digest` (its header alone read)."""
    if not path.is_file():
        return False
    try:
        meta = read_record(path)
    except ValueError:
        return False
    return meta is not None and (meta.source or {}).get("sha256") == digest


def resolve(path: str | os.PathLike) -> Path:
    """`path` itself, unless it names published weights and no such file exists here: then that entry's
    checked file in torch.hub's cache (converted once into ours where the entry converts)."""
    entry = PUBLISHED.get(str(path))
    if entry is None or Path(path).exists():
        return Path(path)
    source, digest = _fetch(entry)
    if entry.convert is None or entry.converted is None:
        return source
    target = source.with_name(entry.converted)
    return target if _converted_from(target, digest) else entry.convert(source, digest, target)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelMeta | None]:
    """Tensors and metadata record of any weights file (googlenet.model.weights.read_file), a training run's
    folder, or published weights by name (`PUBLISHED`)."""
    return read_file(resolve(path))


def read_weights_record(path: str | os.PathLike) -> ModelMeta | None:
    """The metadata record of any weights file, folder or published name (`read_record`: a .safetensors file's
    header alone)."""
    return read_record(resolve(path))


def import_caffemodel(path: str | os.PathLike, out: str | os.PathLike | None = None) -> dict[str, object]:
    """`googlenet weights import`: a .caffemodel converted once into our .safetensors (beside it by default,
    NAME.safetensors) with its metadata record. Any other file is refused in one line and left as it is; a file
    named like BVLC's (bvlc_googlenet.caffemodel) must have its published sha1. Returns what was written."""
    path = Path(path)
    if path.suffix.lower() != ".caffemodel":
        raise ValueError(
            f"{path} is no .caffemodel: `weights import` converts Caffe's GoogLeNet; other weights files load as they "
            "are (--checkpoint, --model.weights)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    digest = sha1(path)
    if path.name == PUBLISHED["bvlc"].file and digest != BVLC_SHA1:
        raise ValueError(
            f"{path} is named as BVLC's GoogLeNet but its sha1 is {digest}, not the published {BVLC_SHA1}: "
            "a damaged download or another file (rename it to import it anyway)"
        )
    state, meta = read_caffemodel(path)
    meta.source = {"file": path.name, "sha1": digest}
    target = write_weights(state, Path(out) if out else path.with_suffix(".safetensors"), meta)
    return {
        "path": str(target),
        "source": str(path),
        "sha1": digest,
        "bvlc": digest == BVLC_SHA1,
        "classes": meta.num_classes,
        "aux": "aux1.linear.weight" in state,
    }
