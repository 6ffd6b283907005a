"""Named GoogLeNet variants, `build_model` and `load_model`."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import torch
from torch import nn

from googlenet.model.googlenet import GoogLeNet
from googlenet.model.hub import read_weights
from googlenet.model.meta import ModelMeta

# The reference Caffe model feeds 0-255 pixels minus the BGR mean (104, 117, 123), unscaled. In this
# package's [0, 1] RGB convention that is mean = (123, 117, 104) / 255 and std = 1 / 255.
CAFFE_MEAN = (123 / 255, 117 / 255, 104 / 255)
CAFFE_STD = (1 / 255, 1 / 255, 1 / 255)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Variant:
    """A named set of GoogLeNet constructor options and the input statistics its weights expect."""

    description: str
    options: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


VARIANTS: dict[str, Variant] = {
    "googlenet": Variant(
        "The paper's GoogLeNet (Table 1, Figure 3): LRN, true 5x5 convolutions, 3x3/2 pool4, Caffe init.",
        dict(norm="lrn", init="xavier"),
        mean=CAFFE_MEAN,
        std=CAFFE_STD,
    ),
    "googlenet_bn": Variant(
        "The paper's layout with BatchNorm after every convolution instead of LRN.",
        dict(norm="bn", bn_eps=1e-5, init="xavier"),
    ),
    "googlenet_tv": Variant(
        "Layout-identical to torchvision.models.googlenet, so that its state_dict loads.",
        dict(
            norm="bn",
            bn_eps=1e-3,
            kernel_5x5=3,
            pool4_kernel=2,
            aux_pool="adaptive",
            dropout=0.2,
            init="trunc_normal",
        ),
    ),
}


# The published weights (googlenet.model.hub.PUBLISHED) that `build_model(name, pretrained=True)` loads.
PRETRAINED = {"googlenet": "bvlc", "googlenet_tv": "torchvision"}


def list_models() -> list[str]:
    """The variant names `build_model` accepts."""
    return list(VARIANTS)


def build_model(
    name: str,
    num_classes: int | None = None,
    weights: str | os.PathLike | None = None,
    pretrained: bool = False,
    **options: Any,
) -> GoogLeNet:
    """Build a variant by name, optionally loading weights (.safetensors of ours, a .pth/.pt state_dict, or
    BVLC's .caffemodel).

    `num_classes` defaults to the weights' own (else 1000; 0 = the pooled features, no classifier). `options`
    are GoogLeNet's keyword arguments (width, aux, dropout, transform_input, ...) and override the variant's.
    The model's `meta` attribute is its metadata record (input size, mean/std, class names, ...). `weights` may
    also name published weights (bvlc, torchvision, places365: googlenet.model.hub); `pretrained=True` loads the
    variant's own (`PRETRAINED`: BVLC's for googlenet, torchvision's for googlenet_tv).
    """
    if pretrained:
        if name not in PRETRAINED:
            published = ", ".join(f"{variant}: {weights}" for variant, weights in PRETRAINED.items())
            raise ValueError(f"no published weights for {name} ({published}); pass weights=PATH")
        if weights is not None:
            raise ValueError("pass pretrained=True or weights=..., not both")
        weights = PRETRAINED[name]
    if weights is not None and not isinstance(weights, str | os.PathLike):
        raise ValueError(
            f"weights={weights!r}: weights are a path or a published name (bvlc, torchvision, places365), not "
            "torchvision's enums (timm's tags: timm.create_model('googlenet_paper.bvlc_in1k', pretrained=True))"
        )
    state, meta = read_weights(weights) if weights is not None else (None, None)
    return _assemble(name, num_classes, state, meta, weights, options)


def _assemble(
    name: str,
    num_classes: int | None,
    state: dict[str, torch.Tensor] | None,
    meta: ModelMeta | None,
    weights: Any,
    options: dict[str, Any],
) -> GoogLeNet:
    """The variant `name` with `state` (read from `weights`) and its record `meta` loaded, where given."""
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(VARIANTS)}")
    variant = VARIANTS[name]
    if meta is not None:
        if meta.variant != name:
            raise ValueError(f"{weights} holds {meta.variant!r} weights, not {name!r}")
        if num_classes is not None and num_classes != meta.num_classes:
            raise ValueError(
                f"{weights} has {meta.num_classes} classes, not {num_classes}: load it with its own "
                "classes, then call model.reset_classifier(num_classes) to fine-tune"
            )
        options = {**meta.options, **options}
        num_classes = meta.num_classes
    elif state is not None and num_classes is None and "linear.weight" in state:
        num_classes = state["linear.weight"].shape[0]
    num_classes = 1000 if num_classes is None else num_classes
    layout = {**variant.options, **options}
    if "aux" not in options and state is not None:  # build heads only where the weights have them
        layout["aux"] = "aux1.linear.weight" in state
    model = GoogLeNet(num_classes=num_classes, **layout)
    if meta is None:
        meta = ModelMeta(variant=name, num_classes=num_classes, mean=variant.mean, std=variant.std)
    model.meta = dataclasses.replace(meta, options=options)
    if state is not None:
        _load_state(model, state, weights)
    return model


@dataclass(frozen=True)
class TaskWeights:
    """How `load_model` rebuilds the model of one task's weights: `what` names it in the error a file of another
    task gets; `build` (state, meta) -> the model with `meta` as its record, for a network that is not a plain
    GoogLeNet (None: build_model)."""

    what: str
    build: Callable[[dict[str, torch.Tensor], ModelMeta], nn.Module] | None = None


# The tasks whose weights are a plain GoogLeNet; googlenet.detect.multibox adds MultiBox's (register_task_weights).
TASKS: dict[str, TaskWeights] = {
    "classify": TaskWeights("a classifier"),
    "regions": TaskWeights("a region classifier (train one with `googlenet detect train`)"),
}


def register_task_weights(task: str, weights: TaskWeights) -> None:
    """Teach `load_model` another task's weights (a network built by the room that owns it)."""
    TASKS[task] = weights


@overload
def load_model(path: str | os.PathLike, task: Literal["classify", "regions"] = ..., **options: Any) -> GoogLeNet: ...
@overload
def load_model(path: str | os.PathLike, task: str, **options: Any) -> nn.Module: ...
def load_model(path: str | os.PathLike, task: str = "classify", **options: Any) -> nn.Module:
    """Rebuild a model from one of our .safetensors files alone, in eval mode: variant, classes and options come
    from it, and the model carries the file's metadata record as `meta`. `task` says which weights the caller expects:
    "classify", "regions" (a region classifier: the same network over its K + 1 window classes) or a
    registered one ("multibox")."""
    state, meta = read_weights(path)
    if meta is None:
        raise ValueError(f"{path} has no googlenet metadata record; use build_model(name, weights=...)")
    if meta.task != task:
        raise ValueError(f"{path} holds {meta.task} weights, not {TASKS[task].what}")
    build = TASKS[task].build
    model = _assemble(meta.variant, None, state, meta, path, options) if build is None else build(state, meta)
    return model.eval()  # ready for inference (train() again to fine-tune)


def _load_state(model: GoogLeNet, state: dict, source: Any) -> None:
    """Load `state` strictly, except that missing auxiliary heads only warn (they are training-only)."""
    own = model.state_dict()
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            raise ValueError(
                f"{source} does not fit this model: {key} is {tuple(tensor.shape)} in the file but "
                f"{tuple(own[key].shape)} here (another variant, width or number of classes?)"
            )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("aux1.", "aux2."))]
    heads = model.aux1 is not None  # a model built without heads (aux=False) leaves the file's heads unread
    unexpected = [k for k in result.unexpected_keys if heads or not k.startswith(("aux1.", "aux2."))]
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit {model.meta.variant}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]} (another variant or layout?)"
        )
    if result.missing_keys:
        warnings.warn(f"{source} has no auxiliary-head weights; aux1/aux2 keep their fresh init", stacklevel=3)
