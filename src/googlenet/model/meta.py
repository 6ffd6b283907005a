"""The metadata record that travels with every set of weights (`ModelMeta`): how to rebuild the model and feed
it, its classes, its measured metrics, where it came from, and a task's head settings."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

METADATA_KEY = "googlenet"  # the record's key in a safetensors file's metadata (and in exported files)


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
    source: dict[str, str] | None = None  # a conversion's source file and its hash (googlenet.model.hub)
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
