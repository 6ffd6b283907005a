"""GoogLeNet exactly as Table 1 and Figure 3 of the paper, with the options its variants need."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from googlenet.model.layers import AuxHead, ConvBlock, Inception, ParallelBranches, local_response_norm

if TYPE_CHECKING:
    from googlenet.model.weights import ModelMeta


class GoogLeNetOutputs(NamedTuple):
    """What `model(x, return_aux=True)` returns, in train and eval mode alike."""

    logits: torch.Tensor
    aux1: torch.Tensor
    aux2: torch.Tensor


class GoogLeNet(nn.Module):
    """GoogLeNet (Table 1, Figure 3) with its two auxiliary classifiers.

    Args:
        num_classes: outputs of the main and auxiliary classifiers; 0 = none (timm's feature model: the forward
            gives the pooled N x 1024 features, and there are no auxiliary heads).
        norm: "lrn" for the paper (LocalRespNorm after pool1 and conv2, no BatchNorm) or "bn"
            (BatchNorm after every convolution, no LRN).
        bn_eps: BatchNorm epsilon when norm="bn" (torchvision uses 1e-3).
        kernel_5x5: kernel of the "5x5" branch; 3 reproduces torchvision's layout.
        pool4_kernel: max pool before 5a; the paper's is 3x3/2, torchvision's 2x2/2.
        aux: build the auxiliary heads (training only; `return_aux=True` needs them).
        aux_pool: "paper" (5x5/3 where it gives 4x4) or "adaptive" (always adaptive 4x4, torchvision).
        dropout, aux_dropout: dropout before the main and the auxiliary classifiers (paper: 40%, 70%).
        width: multiplies every layer's number of filters and hidden units (the paper's wider and cheaper
            networks); the Table 1 widths are width=1.
        transform_input: rescale ImageNet-normalised input to [-1, 1] first, as torchvision's ported
            weights expect.
        init: "xavier" (the reference Caffe model: fan-in uniform weights, biases 0.2, classifier biases 0)
            or "trunc_normal" (torchvision's: std 0.01 with absolute bounds +-2, so in effect untruncated).
        global_pool: the pooling before the classifier: "avg" (the paper's 7x7 average pool, adaptive), "max", or
            "" (none: with num_classes=0 the forward gives the N x 1024 x H/32 x W/32 map, timm's convention).

    Also timm's model interface: `feature_info` (the five stages' ends: channels, reduction, module),
    `forward_intermediates`, `prune_intermediate_layers`, `set_grad_checkpointing`, `get_classifier`,
    `num_features` and `head_hidden_size`.
    """

    if TYPE_CHECKING:  # for mypy alone: torch.jit.script cannot read these annotations (strings)
        meta: ModelMeta  # the metadata record, set by build_model and load_model (a bare GoogLeNet() has none)
        linear: nn.Linear | nn.Identity  # the classifier; nn.Identity for num_classes=0 (pooled features out)
        pretrained_cfg: dict[str, Any]  # timm's data config, where timm.create_model built it (model/timm_models.py)
        default_cfg: dict[str, Any]  # the same (timm's older name)
        feature_info: list[dict[str, Any]]  # timm's description of the stages (set in __init__)

    def __init__(
        self,
        num_classes: int = 1000,
        norm: str = "lrn",
        bn_eps: float = 1e-5,
        kernel_5x5: int = 5,
        pool4_kernel: int = 3,
        aux: bool = True,
        aux_pool: str = "paper",
        dropout: float = 0.4,
        aux_dropout: float = 0.7,
        width: float = 1.0,
        transform_input: bool = False,
        init: str = "xavier",
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        _check_pool(global_pool, num_classes)
        if norm not in ("lrn", "bn"):
            raise ValueError(f"norm must be 'lrn' or 'bn', not {norm!r}")
        if init not in ("xavier", "trunc_normal"):
            raise ValueError(f"init must be 'xavier' or 'trunc_normal', not {init!r}")
        if width <= 0:
            raise ValueError(f"width must be positive, not {width}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be 0 (the pooled features) or more, not {num_classes}")
        aux = aux and num_classes > 0  # a feature model (num_classes=0) has no classifiers, auxiliary or main
        self.num_classes = num_classes
        self.transform_input = transform_input
        conv = partial(ConvBlock, bn_eps=bn_eps if norm == "bn" else None)

        def c(channels: int) -> int:
            return max(1, round(channels * width))

        ch = c(192)  # the stem's output width, updated by each inception row below

        def inception(n1x1: int, n3x3_reduce: int, n3x3: int, n5x5_reduce: int, n5x5: int, pool_proj: int) -> Inception:
            """One Table 1 row; its input is whatever the previous row produced."""
            nonlocal ch
            widths = c(n1x1), c(n3x3_reduce), c(n3x3), c(n5x5_reduce), c(n5x5), c(pool_proj)
            module = Inception(ch, *widths, conv=conv, kernel_5x5=kernel_5x5)
            ch = module.out_channels
            return module

        norm_layer = local_response_norm if norm == "lrn" else nn.Identity
        # N x 3 x 224 x 224
        self.conv1 = conv(3, c(64), 7, stride=2, padding=3)  # N x 64 x 112 x 112
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # N x 64 x 56 x 56
        self.norm1 = norm_layer(c(64))
        self.conv2 = nn.Sequential()  # Table 1's conv2 row: #3x3 reduce, then #3x3
        self.conv2.add_module("reduce", conv(c(64), c(64), 1))  # N x 64 x 56 x 56
        self.conv2.add_module("conv", conv(c(64), c(192), 3, padding=1))  # N x 192 x 56 x 56
        self.norm2 = norm_layer(c(192))
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # N x 192 x 28 x 28
        #                            #1x1 #3x3r #3x3 #5x5r #5x5 proj
        self.inception_3a = inception(64, 96, 128, 16, 32, 32)  # N x 256 x 28 x 28
        self.inception_3b = inception(128, 128, 192, 32, 96, 64)  # N x 480 x 28 x 28
        self.pool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # N x 480 x 14 x 14
        self.inception_4a = inception(192, 96, 208, 16, 48, 64)  # N x 512 x 14 x 14
        aux_channels_4a = ch
        self.inception_4b = inception(160, 112, 224, 24, 64, 64)  # N x 512 x 14 x 14
        self.inception_4c = inception(128, 128, 256, 24, 64, 64)  # N x 512 x 14 x 14
        self.inception_4d = inception(112, 144, 288, 32, 64, 64)  # N x 528 x 14 x 14
        aux_channels_4d = ch
        self.inception_4e = inception(256, 160, 320, 32, 128, 128)  # N x 832 x 14 x 14
        self.pool4 = nn.MaxPool2d(pool4_kernel, stride=2, ceil_mode=True)  # N x 832 x 7 x 7
        self.inception_5a = inception(256, 160, 320, 32, 128, 128)  # N x 832 x 7 x 7
        self.inception_5b = inception(384, 192, 384, 48, 128, 128)  # N x 1024 x 7 x 7
        # The paper's avg pool is 7x7/1 on the 7x7 map; adaptive pooling is the same there and lets
        # every input size from 32x32 up reach the classifier.
        self.global_pool = global_pool
        self.avgpool = GLOBAL_POOLS[global_pool]()  # N x 1024 x 1 x 1 ("avg")
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(ch, num_classes) if num_classes else nn.Identity()  # N x num_classes
        self.num_features = self.head_hidden_size = ch
        self.feature_info = [  # each stage's last layer, before its max pool (timm's features_only taps)
            dict(num_chs=c(64), reduction=2, module="conv1"),
            dict(num_chs=c(192), reduction=4, module="norm2"),
            dict(num_chs=self.inception_3b.out_channels, reduction=8, module="inception_3b"),
            dict(num_chs=self.inception_4e.out_channels, reduction=16, module="inception_4e"),
            dict(num_chs=ch, reduction=32, module="inception_5b"),
        ]

        aux_head = partial(AuxHead, conv=conv, reduce=c(128), hidden=c(1024), dropout=aux_dropout, pool=aux_pool)
        self.aux1 = aux_head(aux_channels_4a, num_classes) if aux else None
        self.aux2 = aux_head(aux_channels_4d, num_classes) if aux else None
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        classifiers = {self.linear} | {head.linear for head in (self.aux1, self.aux2) if head is not None}
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if init == "xavier":
                    # Caffe's "xavier" filler: uniform in +-sqrt(3 / fan_in).
                    fan_in = module.weight[0].numel()
                    bound = math.sqrt(3.0 / fan_in)
                    nn.init.uniform_(module.weight, -bound, bound)
                else:
                    nn.init.trunc_normal_(module.weight, std=0.01, a=-2, b=2)
                if module.bias is not None:
                    bias = 0.2 if init == "xavier" and module not in classifiers else 0.0
                    nn.init.constant_(module.bias, bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The feature map after 5b, and the outputs of 4a and 4d that the auxiliary heads read."""
        x = self._transformed(x)
        x = self.norm1(self.pool1(self.conv1(x)))
        x = self.pool2(self.norm2(self.conv2(x)))
        x = self.pool3(self.inception_3b(self.inception_3a(x)))
        out_4a = self.inception_4a(x)
        out_4d = self.inception_4d(self.inception_4c(self.inception_4b(out_4a)))
        x = self.pool4(self.inception_4e(out_4d))
        x = self.inception_5b(self.inception_5a(x))
        return x, out_4a, out_4d

    def _transformed(self, x: torch.Tensor) -> torch.Tensor:
        """The input as the first layer takes it (torchvision's `transform_input`, where set)."""
        if self.transform_input:
            # ImageNet's statistics, which torchvision's transform_input undoes (written out: TorchScript reads no
            # global tuples)
            mean = torch.tensor([0.485, 0.456, 0.406], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * std + mean - 0.5) / 0.5
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> the N x 1024 x H/32 x W/32 feature map after inception 5b."""
        return self._features(x)[0]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits (or the pooled, dropped-out N x 1024 vector with `pre_logits`; the map itself
        with global_pool="")."""
        x = self.avgpool(features)
        if self.global_pool:
            x = torch.flatten(x, 1)
        x = self.dropout(x)
        return x if pre_logits else self.linear(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's interface: the feature map and the outputs of the stages `indices` selects (`feature_info`:
        0 conv1, 1 conv2 (after norm2), 2 inception_3b, 3 inception_4e, 4 inception_5b; None all of them, an int
        n the last n). `stop_early` stops after the last one taken; `norm` does nothing (no final norm here)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', not {output_fmt!r}")
        take, last = _take_indices(len(self.feature_info), indices)
        ends = {_LAYERS.index(self.feature_info[i]["module"]) for i in take}
        layers = _LAYERS[: _LAYERS.index(self.feature_info[last]["module"]) + 1] if stop_early else _LAYERS
        x = self._transformed(x)
        intermediates = []
        for k, name in enumerate(layers):
            x = getattr(self, name)(x)
            if k in ends:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's interface: drop the layers after the last stage `indices` selects (and the classifier and its
        pooling with `prune_head`); returns the stages kept."""
        take, last = _take_indices(len(self.feature_info), indices)
        for name in _LAYERS[_LAYERS.index(self.feature_info[last]["module"]) + 1 :]:
            setattr(self, name, nn.Identity())
        if last < len(self.feature_info) - 1:
            self.num_features = self.head_hidden_size = self.feature_info[last]["num_chs"]
        if prune_head or last < len(self.feature_info) - 1:
            self.reset_classifier(0, "")
        return take

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each Inception module's activations in the backward pass instead of keeping them (less
        memory, about a third more compute); the outputs are the same."""
        for module in self.modules():
            if isinstance(module, ParallelBranches):
                module.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        return self.linear

    def forward(self, x: torch.Tensor, return_aux: bool = False) -> torch.Tensor | GoogLeNetOutputs:
        """Logits; with `return_aux=True` a GoogLeNetOutputs(logits, aux1, aux2), whatever the mode."""
        features, out_4a, out_4d = self._features(x)
        logits = self.forward_head(features)
        if torch.jit.is_scripting():  # noqa: SIM108 (an if: TorchScript leaves out the other branch)
            wanted = return_aux
        else:  # torch.fx traces return_aux as a placeholder (a Proxy, which no `if` can read): the logits
            wanted = return_aux is True
        if not wanted:
            return logits
        if self.aux1 is None or self.aux2 is None:
            raise ValueError("return_aux=True needs the auxiliary heads; this model was built with aux=False")
        return GoogLeNetOutputs(logits, self.aux1(out_4a), self.aux2(out_4d))

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None, class_names: list[str] | None = None
    ) -> None:
        """New, freshly initialised classifiers (main and auxiliary) for `num_classes` outputs (0: none, the
        model gives its pooled features, and the auxiliary heads go); `global_pool` as in the constructor
        (default: as it is; timm's signature). The metadata record follows: its classes, their `class_names`
        (if given) and no measured metrics (they were the old classifier's). A list as the second argument is
        the class names (the earlier signature, reset_classifier(n, names))."""
        if global_pool is not None and not isinstance(global_pool, str):
            global_pool, class_names = None, global_pool
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        global_pool = self.global_pool if global_pool is None else global_pool
        _check_pool(global_pool, num_classes)
        self.global_pool, self.avgpool = global_pool, GLOBAL_POOLS[global_pool]()
        like = next(self.parameters())
        self.num_classes = num_classes
        self.linear = _fresh(self.num_features, num_classes, like)
        for name in ("aux1", "aux2"):
            head = getattr(self, name)
            if head is not None and num_classes:
                head.linear = _fresh(head.linear.in_features, num_classes, like)
            elif head is not None:
                setattr(self, name, None)
        if hasattr(self, "meta"):
            names = list(class_names) if class_names is not None else None
            self.meta = dataclasses.replace(self.meta, num_classes=num_classes, class_names=names, metrics={})


# The layers in forward order after the input transform (the auxiliary heads aside), as forward_intermediates runs them.
_LAYERS = [
    "conv1", "pool1", "norm1", "conv2", "norm2", "pool2", "inception_3a", "inception_3b", "pool3", "inception_4a",
    "inception_4b", "inception_4c", "inception_4d", "inception_4e", "pool4", "inception_5a", "inception_5b",
]  # fmt: skip
GLOBAL_POOLS: dict[str, Callable[[], nn.Module]] = {
    "avg": partial(nn.AdaptiveAvgPool2d, 1),
    "max": partial(nn.AdaptiveMaxPool2d, 1),
    "": nn.Identity,
}


def _check_pool(global_pool: str, num_classes: int) -> None:
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool must be one of {', '.join(map(repr, GLOBAL_POOLS))}, not {global_pool!r}")
    if not global_pool and num_classes:
        raise ValueError('global_pool="" (the unpooled map) needs num_classes=0: a classifier takes pooled features')


def _take_indices(count: int, indices: int | list[int] | tuple[int, ...] | None) -> tuple[list[int], int]:
    """timm's `feature_take_indices`: the stages to take (None: all; n: the last n; a list: those, negative ones
    from the end) and the last of them."""
    if indices is None:
        indices = count
    chosen = list(range(count - indices, count)) if isinstance(indices, int) else [i % count for i in indices]
    if not chosen or not all(0 <= i < count for i in chosen) or (isinstance(indices, int) and indices > count):
        raise ValueError(f"feature indices {indices!r} are out of range for {count} stages")
    return chosen, max(chosen)


def _fresh(in_features: int, num_classes: int, like: torch.Tensor) -> nn.Linear | nn.Identity:
    """A classifier of `in_features` inputs with the init scale of the reference model's, zero bias, on
    `like`'s device and dtype (nn.Identity for no classes)."""
    if not num_classes:
        return nn.Identity()
    new = nn.Linear(in_features, num_classes, device=like.device, dtype=like.dtype)
    bound = math.sqrt(3.0 / in_features)
    nn.init.uniform_(new.weight, -bound, bound)
    nn.init.zeros_(new.bias)
    return new
