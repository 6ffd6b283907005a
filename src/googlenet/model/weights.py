"""Weights on disk: safetensors with a metadata record, and import of torchvision's googlenet state_dict."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

METADATA_KEY = "googlenet"


@dataclass(frozen=True)
class RegionHead:
    """A region classifier's settings (task "regions"), as `googlenet detect train` trained it: the pixels of
    context around each box after warping, the proposal method its windows came from, the IoU of an object
    window."""

    context: int
    proposals: str
    fg_iou: float


@dataclass(frozen=True)
class MultiBoxHead:
    """A MultiBox model's settings (task "multibox"): its number of priors, the proposals kept per image after
    NMS at IoU `nms`, the head's pooled grid (0: global average pool) and the tiles it runs on."""

    priors: int
    top: int
    nms: float
    grid: int
    tiles: int


HEADS = {"regions": RegionHead, "multibox": MultiBoxHead}
# Files written before a head setting existed were trained without it: MultiBox pooled globally (grid 0) and
# ran on the whole image (tiles 1). These say what such a file holds; the defaults for new training are the
# config's (googlenet.train.config).
_BEFORE = {"multibox": {"grid": 0, "tiles": 1}}


@dataclass
class ModelMeta:
    """What a set of weights needs besides its tensors: how to rebuild the model and feed it.

    `mean`/`std` apply to RGB pixels scaled to [0, 1]. `metrics` holds measured results, each with the
    command that produced it.
    """

    variant: str
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)
    input_size: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # one per RGB channel
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    resize: str = "shorter"  # the test crop's resize: "shorter" side to input_size / crop_pct, or "warp" both
    class_names: list[str] | None = None
    class_ids: list[str] | None = None  # the classes' dataset ids where they have them (ImageNet's wnids)
    metrics: dict[str, Any] = field(default_factory=dict)
    task: str = "classify"  # "regions", "multibox" (the backbone's variant and options above, its head's here)
    head: RegionHead | MultiBoxHead | None = None  # HEADS[task]; None for a classifier

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        record = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        meta = cls(**{k: v for k, v in record.items() if k in known})
        meta.mean, meta.std = tuple(meta.mean), tuple(meta.std)
        head = HEADS.get(meta.task)
        meta.head = head(**{**_BEFORE.get(meta.task, {}), **record["head"]}) if head and record.get("head") else None
        return meta


def save_weights(model: torch.nn.Module, path: str | os.PathLike, meta: ModelMeta | None = None) -> Path:
    """Write `model`'s state_dict as safetensors with its metadata record (default: `model.meta`).

    The file is written beside its destination and renamed into place, so a crash never leaves a
    half-written file under the final name.
    """
    path = Path(path)
    meta = meta if meta is not None else cast(ModelMeta, model.meta)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata={METADATA_KEY: meta.to_json()})
    os.chmod(tmp, 0o644)  # the temporary file is created private; the weights are meant to be shared
    os.replace(tmp, path)
    return path


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelMeta | None]:
    """Tensors and metadata record from a .safetensors file, a state_dict from a .pth/.pt file, or BVLC's Caffe
    GoogLeNet from a .caffemodel (googlenet.model.caffe, with its record).

    Pickled files load with `weights_only=True`, so they cannot run code. A torchvision googlenet
    state_dict is renamed to this package's module names. Returns (state_dict, meta or None).
    """
    from googlenet.model.hub import locate

    path = locate(path)  # `bvlc` or `torchvision`: published weights, from torch.hub's cache
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                record = (f.metadata() or {}).get(METADATA_KEY)
                state = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path} is not a readable safetensors file ({err})") from None
        return state, _meta(record, path) if record else None
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
        from googlenet.model.caffe import read_caffemodel

        return read_caffemodel(path)
    raise ValueError(f"{path}: weights must be .safetensors, .pth, .pt or .caffemodel, not {suffix or 'no suffix'}")


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
