"""Weights files (the formats layer): our safetensors with the metadata record, pickled state_dicts loaded safely,
torchvision's googlenet names renamed to ours, and a .caffemodel through the Caffe reader; no names resolved, no
model built."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from googlenet.model.caffe import read_caffemodel
from googlenet.model.meta import HEADS, METADATA_KEY, ModelMeta, MultiBoxHead, RegionHead

__all__ = [
    "HEADS",
    "METADATA_KEY",
    "RUN_WEIGHTS",
    "ModelMeta",
    "MultiBoxHead",
    "RegionHead",
    "load_pickle",
    "read_file",
    "read_record",
    "save_weights",
    "torchvision_to_googlenet",
    "weights_file",
    "write_weights",
]

RUN_WEIGHTS = "model.safetensors"  # the inference weights in a training run's folder


def weights_file(path: str | os.PathLike) -> Path:
    """`path`, or the inference weights in it where it is a training run's folder: every command that reads
    weights takes either."""
    path = Path(path)
    return path / RUN_WEIGHTS if path.is_dir() else path


def save_weights(model: torch.nn.Module, path: str | os.PathLike, meta: ModelMeta | None = None) -> Path:
    """Write `model`'s state_dict as safetensors with its metadata record (default: `model.meta`).

    The file is written beside its destination and renamed into place, so a crash never leaves a
    half-written file under the final name.
    """
    meta = meta if meta is not None else cast(ModelMeta, model.meta)
    return write_weights(model.state_dict(), path, meta)


def write_weights(state: dict[str, torch.Tensor], path: str | os.PathLike, meta: ModelMeta) -> Path:
    """Write a state_dict as safetensors with its metadata record, renamed into place once complete."""
    path = Path(path)
    tensors = {name: t.detach().cpu().contiguous() for name, t in state.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata={METADATA_KEY: meta.to_json()})
    os.chmod(tmp, 0o644)  # the temporary file is created private; the weights are meant to be shared
    os.replace(tmp, path)
    return path


def read_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelMeta | None]:
    """Tensors and metadata record from a .safetensors file (or a training run's folder), a state_dict from a
    .pth/.pt file, or BVLC's Caffe GoogLeNet from a .caffemodel (googlenet.model.caffe, with its record). Names of
    published weights are resolved above this reader (googlenet.model.hub.read_weights).

    Pickled files load with `weights_only=True`, so they cannot run code. A torchvision googlenet
    state_dict is renamed to this package's module names. Returns (state_dict, meta or None).
    """
    path = weights_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path, tensors=True)
    if suffix in (".pth", ".pt"):
        state = load_pickle(path)
        for key in ("model", "state_dict"):  # a training checkpoint rather than a bare state_dict
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path} holds no state_dict of tensors")
        if is_torchvision_state_dict(state):
            state = torchvision_to_googlenet(state)
        return state, None
    if suffix == ".caffemodel":
        return read_caffemodel(path)
    raise ValueError(f"{path}: weights must be .safetensors, .pth, .pt or .caffemodel, not {suffix or 'no suffix'}")


def read_record(path: str | os.PathLike) -> ModelMeta | None:
    """The metadata record alone: of a .safetensors file only the header is read; other formats (whose record
    is derived from their contents) are read whole."""
    path = weights_file(path)
    if path.suffix.lower() == ".safetensors" and path.is_file():
        return _read_safetensors(path, tensors=False)[1]
    return read_file(path)[1]


def _read_safetensors(path: Path, tensors: bool) -> tuple[dict[str, torch.Tensor], ModelMeta | None]:
    """A safetensors file's record and, with `tensors`, its tensors; a damaged file is a one-line ValueError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            record = (f.metadata() or {}).get(METADATA_KEY)
            state = {name: f.get_tensor(name) for name in f.keys()} if tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from None
    return state, _meta(record, path) if record else None


def _meta(record: str, path: Path) -> ModelMeta:
    """The metadata record of a weights file; a damaged one is a one-line ValueError."""
    try:
        meta = ModelMeta.from_json(record)
        if not isinstance(meta.variant, str) or not isinstance(meta.num_classes, int) or meta.num_classes < 0:
            raise ValueError(f"variant {meta.variant!r}, num_classes {meta.num_classes!r}")
        return meta
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: its metadata record is damaged ({err})") from None


def load_pickle(path: str | os.PathLike) -> Any:
    """A .pth/.pt file loaded with weights_only=True: tensors and plain containers only, so it cannot run code.

    A file that asks for anything else, or a damaged one, gives a one-line ValueError (torch's own message
    spans many lines and suggests weights_only=False, which this package never uses).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        asked = re.search(r"GLOBAL (\S+)", str(err))
        what = f" ({asked.group(1)})" if asked else ""
        raise ValueError(
            f"{path} could not be loaded: refused, it holds more than tensors{what} and loading it could run code"
        ) from None
    except Exception as err:  # a damaged file raises anything
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path} could not be loaded: damaged or not a PyTorch file ({reason[:200]})") from None


# torchvision's module names -> ours (Table 1 row names). Applied in order, first match only.
_TORCHVISION_RENAMES = [
    (r"^conv2\.", "conv2.reduce."),
    (r"^conv3\.", "conv2.conv."),
    (r"^inception(\d[a-e])\.branch1\.", r"inception_\1.branch1x1."),
    (r"^inception(\d[a-e])\.branch2\.0\.", r"inception_\1.branch3x3.reduce."),
    (r"^inception(\d[a-e])\.branch2\.1\.", r"inception_\1.branch3x3.conv."),
    (r"^inception(\d[a-e])\.branch3\.0\.", r"inception_\1.branch5x5.reduce."),
    (r"^inception(\d[a-e])\.branch3\.1\.", r"inception_\1.branch5x5.conv."),
    (r"^inception(\d[a-e])\.branch4\.1\.", r"inception_\1.branch_pool.proj."),
    (r"^(aux\d)\.fc1\.", r"\1.fc."),
    (r"^(aux\d)\.fc2\.", r"\1.linear."),
    (r"^fc\.", "linear."),
]


def is_torchvision_state_dict(state: dict[str, torch.Tensor]) -> bool:
    """True for a state_dict saved from torchvision.models.googlenet."""
    return "inception3a.branch1.conv.weight" in state


def torchvision_to_googlenet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision googlenet state_dict's keys to this package's `googlenet_tv` layout."""
    renamed = {}
    for key, tensor in state.items():
        for pattern, replacement in _TORCHVISION_RENAMES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                key = new_key
                break
        renamed[key] = tensor
    return renamed
