"""BVLC's Caffe GoogLeNet (models/bvlc_googlenet, the paper's reference replication) as weights of the paper
variant: a .caffemodel read without Caffe (a reader of the few protobuf messages it needs; nothing in the file
is executed), BVLC's layer names mapped onto ours, its BGR 0-255 input turned into the RGB input every model here
takes, and ImageNet's class names in the metadata record."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from googlenet.model.meta import ModelMeta

BVLC_SHA1 = "405fc5acd08a3bb12de8ee5e23a96bec22f08204"  # models/bvlc_googlenet/readme.md
BVLC_MEAN_BGR = (104.0, 117.0, 123.0)  # Caffe's mean_value, subtracted from 0-255 BGR pixels

INCEPTION = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")  # the Inception modules, in order
BRANCHES = {  # BVLC's name of each branch layer -> its convolution in our Inception module
    "1x1": "branch1x1.conv",
    "3x3_reduce": "branch3x3.reduce.conv",
    "3x3": "branch3x3.conv.conv",
    "5x5_reduce": "branch5x5.reduce.conv",
    "5x5": "branch5x5.conv.conv",
    "pool_proj": "branch_pool.proj.conv",
}
# BVLC's layer name -> our module (its .weight and .bias), the main network first, then the auxiliary heads.
LAYERS = {
    "conv1/7x7_s2": "conv1.conv",
    "conv2/3x3_reduce": "conv2.reduce.conv",
    "conv2/3x3": "conv2.conv.conv",
    **{f"inception_{i}/{b}": f"inception_{i}.{ours}" for i in INCEPTION for b, ours in BRANCHES.items()},
    "loss3/classifier": "linear",
}
AUX_LAYERS = {
    f"loss{k}/{part}": f"aux{k}.{ours}"
    for k in (1, 2)
    for part, ours in (("conv", "conv.conv"), ("fc", "fc"), ("classifier", "linear"))
}


class _Truncated(ValueError):
    pass


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise _Truncated("the file ends inside a number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("a number longer than 64 bits")


def _fields(data: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one protobuf message: ints for varint and fixed fields' raw bits,
    memoryviews for length-delimited ones."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, at = _varint(data, at)
            yield number, wire, value
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if at + size > len(data):
                raise _Truncated("the file ends inside a number")
            yield number, wire, int.from_bytes(data[at : at + size], "little")
            at += size
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise _Truncated("the file ends inside a message")
            yield number, wire, data[at : at + size]
            at += size
        else:
            raise ValueError(f"wire type {wire} (groups are not used by Caffe)")


def _blob(data: memoryview) -> np.ndarray:
    """A BlobProto: its shape (`shape`, or the old num/channels/height/width) and its floats, packed or not."""
    shape: list[int] = []
    old = {1: 1, 2: 1, 3: 1, 4: 1}
    had_old = False
    packed: list[np.ndarray] = []
    singles: list[float] = []
    for number, wire, value in _fields(data):
        if number == 7 and isinstance(value, memoryview):  # BlobShape: dim = 1, packed or not
            for n, _, v in _fields(value):
                if n == 1 and isinstance(v, memoryview):
                    at = 0
                    while at < len(v):
                        dim, at = _varint(v, at)
                        shape.append(dim)
                elif n == 1 and isinstance(v, int):
                    shape.append(v)
        elif number in old and wire == 0 and isinstance(value, int):
            old[number], had_old = value, True
        elif number == 5 and isinstance(value, memoryview):
            packed.append(np.frombuffer(bytes(value), "<f4"))
        elif number == 5 and wire == 5 and isinstance(value, int):
            singles.append(struct.unpack("<f", value.to_bytes(4, "little"))[0])
        elif number == 8 and isinstance(value, memoryview):
            packed.append(np.frombuffer(bytes(value), "<f8").astype(np.float32))
    values = np.concatenate([*packed, np.asarray(singles, np.float32)]) if packed else np.asarray(singles, np.float32)
    dims = shape or ([old[1], old[2], old[3], old[4]] if had_old else [len(values)])
    if int(np.prod(dims)) != len(values):
        raise ValueError(f"a blob of shape {dims} holds {len(values)} values")
    return values.reshape(dims)


def read_mean(path: str | os.PathLike) -> tuple[float, float, float]:
    """A Caffe mean file (a BlobProto .binaryproto: the mean image, BGR 0-255) as its per-channel mean (B, G, R)."""
    try:
        image = _blob(memoryview(Path(path).read_bytes()))
    except ValueError as err:  # _Truncated included
        raise ValueError(f"{path} is no Caffe mean file ({err})") from None
    if image.ndim < 3 or image.reshape(-1, *image.shape[-3:]).shape[1] != 3:
        raise ValueError(f"{path} is no 3-channel mean image (shape {tuple(image.shape)})")
    b, g, r = (float(v) for v in image.reshape(-1, *image.shape[-3:])[0].mean(axis=(1, 2)))
    return b, g, r


def read_layers(path: str | os.PathLike, content: bytes | None = None) -> dict[str, list[np.ndarray]]:
    """Every layer's blobs of a .caffemodel (`content`: its bytes, when already read) by layer name, from the
    current `layer` (field 100) and the V1 `layers` (field 2) layouts alike."""
    data = memoryview(Path(path).read_bytes() if content is None else content)
    layers: dict[str, list[np.ndarray]] = {}
    try:
        for number, _, value in _fields(data):
            if number not in (100, 2) or not isinstance(value, memoryview):
                continue
            name_field, blobs_field = (1, 7) if number == 100 else (4, 6)
            name, blobs = None, []
            for n, _, v in _fields(value):
                if n == name_field and isinstance(v, memoryview):
                    name = bytes(v).decode("utf-8", "replace")
                elif n == blobs_field and isinstance(v, memoryview):
                    blobs.append(_blob(v))
            if name is not None and blobs:
                layers[name] = blobs
    except _Truncated as err:
        raise ValueError(f"{path} is truncated ({err})") from None
    except ValueError as err:
        raise ValueError(f"{path} is not a Caffe model ({err})") from None
    if not layers:
        raise ValueError(f"{path} is not a Caffe model (no layer with weights in it)")
    return layers


def sha1(path: str | os.PathLike) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def imagenet_classes() -> list[str]:
    """ILSVRC-2012's 1,000 class names in the sorted-wnid order Caffe's synsets use (as torchvision ships them)."""
    from torchvision.models import GoogLeNet_Weights

    return list(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_wnids() -> list[str]:
    """ILSVRC-2012's 1,000 wnids, sorted: the class order of Caffe's synset_words.txt and torchvision's names
    (shipped with the package, from the standard list that timm ships too)."""
    return (Path(__file__).with_name("imagenet_wnids.txt")).read_text().split()


def read_caffemodel(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    """BVLC GoogLeNet's weights as the paper variant's state_dict (RGB input: conv1's input channels flipped
    from Caffe's BGR; the auxiliary heads where the file has them) with its metadata record: Caffe's 0-255
    input minus the BGR mean as mean/std of [0, 1] RGB pixels, ImageNet's class names, Caffe's 224 centre crop
    of 256."""
    content = Path(path).read_bytes()  # read once: parsed, and its sha1 says whether it is BVLC's file
    layers = read_layers(path, content)
    wanted = {**LAYERS, **(AUX_LAYERS if all(name in layers for name in AUX_LAYERS) else {})}
    state: dict[str, torch.Tensor] = {}
    for theirs, ours in wanted.items():
        if theirs not in layers:
            raise ValueError(f"{path} is no BVLC GoogLeNet: it has no layer {theirs}")
        blobs = layers[theirs]
        if len(blobs) != 2:
            raise ValueError(f"{path}: layer {theirs} has {len(blobs)} blobs, not a weight and a bias")
        weight, bias = (torch.from_numpy(np.ascontiguousarray(b, np.float32)) for b in blobs)
        if theirs == "conv1/7x7_s2" and weight.ndim == 4 and weight.shape[1] == 3:
            weight = weight.flip(1).contiguous()  # Caffe's BGR input channels -> RGB
        if ours.endswith(("linear", "fc")):  # InnerProduct: (out, in), or (1, 1, out, in) in old files
            weight = weight.reshape(-1, weight.shape[-1])
        state[f"{ours}.weight"], state[f"{ours}.bias"] = weight, bias.reshape(-1)
    classes = state["linear.weight"].shape[0]
    names, wnids = (imagenet_classes(), imagenet_wnids()) if classes == 1000 else (None, None)
    width = state["conv1.conv.weight"].shape[0] / 64  # BVLC's is Table 1's (1.0); a narrower net says so here
    b, g, r = BVLC_MEAN_BGR
    meta = ModelMeta(
        variant="googlenet",
        num_classes=classes,
        options={} if width == 1 else {"width": width},
        input_size=224,
        mean=(r / 255, g / 255, b / 255),
        std=(1 / 255,) * 3,
        crop_pct=224 / 256,
        resize="warp",  # BVLC's protocol: images warped to 256x256, then the centre 224 crop
        class_names=names,
        class_ids=wnids,
        metrics={"ilsvrc2012/val (BVLC's readme, centre crop)": {"top1": 0.687, "top5": 0.889}}
        if hashlib.sha1(content).hexdigest() == BVLC_SHA1
        else {},
    )
    return state, meta
