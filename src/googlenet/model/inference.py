"""The inference path: the same outputs as the trained model, computed with fewer and wider operations.

`optimize_for_inference` folds every BatchNorm into the convolution before it, runs each Inception module's
three 1x1 convolutions that read the module's input (#1x1, #3x3 reduce, #5x5 reduce) as one wider
convolution, drops the training-only auxiliary heads and stores the weights channels_last, which the
oneDNN convolutions of PyTorch's CPU build run fastest; on the CPU each convolution then runs with its ReLU as one
oneDNN call on weights reordered once (`ConvReLU`). The result is still a `GoogLeNet`, so `forward`,
`forward_features`, `forward_head`, `linear` and `meta` work as before.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from googlenet.model.googlenet import GoogLeNet
from googlenet.model.layers import ConvBlock, Inception

PACKED_SHAPES = 4  # input shapes whose reordered weights a ConvReLU keeps (a few batch sizes)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}  # the inference model's precisions, by option name


class ConvReLU(nn.Sequential):
    """A convolution and its ReLU for inference (`[0]` the Conv2d, `[1]` the ReLU).

    On the CPU in float32 (bfloat16 where oneDNN has kernels for it) without autograd it runs as one oneDNN
    call, convolution, bias and ReLU together, on weights reordered once per input shape into oneDNN's blocked
    layout (`mkldnn._convolution_pointwise`, the kernels Inductor's freezing uses). That also keeps every
    convolution on oneDNN: `F.conv2d` sends a batch-1 3x3 convolution of a small map (inception_4a, 5a, 5b at
    224 px) to PyTorch's `_slow_conv2d_forward`.
    Elsewhere (CUDA, other dtypes, autograd, and while torch.jit traces or torch.compile / torch.export
    compile, so that exports and compiled graphs hold the plain operations) it runs as the two modules."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv, nn.ReLU(inplace=True))
        self._packed: dict[tuple, torch.Tensor] = {}

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        conv = cast(nn.Conv2d, self[0])
        if isinstance(conv.padding, str) or not _onednn_eligible(input, conv.weight):
            return super().forward(input)
        weight = conv.weight  # its version: a weight changed in place is reordered again (inference tensors have none)
        key = (tuple(input.shape), weight.data_ptr(), -1 if weight.is_inference() else weight._version)
        packed = self._packed.get(key)
        if packed is None:
            while len(self._packed) >= PACKED_SHAPES:
                del self._packed[next(iter(self._packed))]
            geometry = conv.padding, conv.stride, conv.dilation, conv.groups
            packed = torch.ops.mkldnn._reorder_convolution_weight(weight, *geometry, list(input.shape))
            self._packed[key] = packed
        return torch.ops.mkldnn._convolution_pointwise(
            input, packed, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups, "relu", [], ""
        )

    def __getstate__(self) -> dict:
        """Copies and pickles leave the reordered weights behind (oneDNN tensors are neither)."""
        return {**super().__getstate__(), "_packed": {}}


def _onednn_eligible(input: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        input.device.type == "cpu"
        and input.dtype == weight.dtype
        and (input.dtype == torch.float32 or (input.dtype == torch.bfloat16 and _bf16_kernels()))
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and torch.backends.mkldnn.is_available()
    )


def _bf16_kernels() -> bool:
    """Whether oneDNN has bfloat16 convolutions on this CPU (AVX512-BF16, AMX); elsewhere PyTorch's own run."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def fold_block(block: ConvBlock) -> ConvReLU:
    """conv, [bn], relu -> conv (BatchNorm folded into its weights and bias), relu."""
    conv = block.conv if "bn" not in block._modules else fuse_conv_bn_eval(block.conv, block.bn)
    return ConvReLU(conv)


def concat_convs(convs: list[nn.Conv2d]) -> nn.Conv2d:
    """One convolution whose output channels are those of `convs` (same input and geometry) in order."""
    first = convs[0]
    # A Conv2d's geometry is pairs (padding: or a string); torch types the attributes as tuple[int, ...].
    pair = tuple[int, int]
    fused = nn.Conv2d(
        first.in_channels,
        sum(c.out_channels for c in convs),
        cast(pair, first.kernel_size),
        cast(pair, first.stride),
        cast("str | tuple[int, int]", first.padding),
        bias=True,
        device=first.weight.device,
        dtype=first.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(torch.cat([c.weight for c in convs]))
        assert fused.bias is not None  # bias=True
        fused.bias.copy_(torch.cat([c.weight.new_zeros(c.out_channels) if c.bias is None else c.bias for c in convs]))
    return fused


class FusedInception(nn.Module):
    """An Inception module (Figure 2b) for inference: its three 1x1 convolutions on the input run as one.

    Same output as the module it is made from (to float rounding): the wide convolution's channels are
    split into the #1x1 branch's output and the inputs of the 3x3 and 5x5 convolutions.
    """

    def __init__(self, module: Inception) -> None:
        super().__init__()
        # Inception's branches hold ConvBlocks (and a MaxPool2d), which nn.Sequential's attributes do not show.
        b3x3, b5x5, pool = module.branch3x3, module.branch5x5, module.branch_pool
        reduces = [fold_block(cast(ConvBlock, b)) for b in (module.branch1x1, b3x3.reduce, b5x5.reduce)]
        convs = [cast(nn.Conv2d, block[0]) for block in reduces]  # fold_block's conv, before its ReLU
        self.splits = [conv.out_channels for conv in convs]
        self.reduce = ConvReLU(concat_convs(convs))
        self.conv3x3 = fold_block(cast(ConvBlock, b3x3.conv))
        self.conv5x5 = fold_block(cast(ConvBlock, b5x5.conv))
        self.branch_pool = nn.Sequential(cast(nn.Module, pool.pool), fold_block(cast(ConvBlock, pool.proj)))
        self.out_channels = module.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        out1x1, in3x3, in5x5 = reduced.split(self.splits, dim=1)
        # A channel slice is contiguous in no memory format, and PyTorch then runs the convolution on its slow
        # im2col path instead of oneDNN's; a copy of the (narrow) slice is far cheaper.
        nhwc = reduced.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if nhwc else torch.contiguous_format
        in3x3, in5x5 = in3x3.contiguous(memory_format=layout), in5x5.contiguous(memory_format=layout)
        return torch.cat([out1x1, self.conv3x3(in3x3), self.conv5x5(in5x5), self.branch_pool(x)], dim=1)


def optimize_for_inference(
    model: GoogLeNet, channels_last: bool = True, fuse_1x1: bool = True, dtype: torch.dtype = torch.float32
) -> GoogLeNet:
    """An eval-mode copy of `model` with BatchNorm folded, each Inception's 1x1 convolutions fused (unless
    `fuse_1x1` is False) and no auxiliary heads, its weights channels_last (unless `channels_last` is False).
    Same logits to float rounding; `model` is left unchanged.

    With `dtype=torch.bfloat16` the weights are stored and the network computed in bfloat16: `forward` takes
    float32 images and returns float32 logits, close to the float32 model's (docs/inference.md says how close on
    trained weights); fast on CUDA and on CPUs with AVX512-BF16 or AMX, emulated (slow) on others.

    Run it under `torch.inference_mode()`. Inputs may be in either memory format: the first convolution
    returns channels_last when its weights are."""
    if dtype not in PRECISIONS.values():
        raise ValueError(f"inference dtype must be one of {', '.join(map(str, PRECISIONS.values()))}, not {dtype}")
    optimized = copy.deepcopy(model).eval()
    optimized.aux1 = optimized.aux2 = None
    _replace_blocks(optimized, fuse_1x1)
    if channels_last:
        optimized = optimized.to(memory_format=torch.channels_last)
    if dtype != torch.float32:
        optimized = optimized.to(dtype)
        optimized.register_forward_pre_hook(_cast_input)
        optimized.register_forward_hook(_float_output)
    # The record itself, shared with `model`; None for a GoogLeNet built directly, which has no record (`meta` is
    # typed for the models of build_model and load_model).
    optimized.meta = getattr(model, "meta", None)  # type: ignore[assignment]
    return optimized.requires_grad_(False)


def precision_dtype(precision: str) -> torch.dtype:
    """`fp32` or `bf16` (a command's --precision) -> the dtype for optimize_for_inference."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def _cast_input(module: nn.Module, args: tuple) -> tuple:
    """A bfloat16 model's forward takes float32 images: cast to the weights' dtype."""
    dtype = next(module.parameters()).dtype
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def _float_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def _replace_blocks(parent: nn.Module, fuse_1x1: bool) -> None:
    """Swap, depth first, every Inception module for a FusedInception (with `fuse_1x1`) and every other
    ConvBlock for its fold."""
    for name, child in parent.named_children():
        if fuse_1x1 and isinstance(child, Inception):
            setattr(parent, name, FusedInception(child))
        elif isinstance(child, ConvBlock):
            setattr(parent, name, fold_block(child))
        else:
            _replace_blocks(child, fuse_1x1)
