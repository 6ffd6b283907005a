"""The building blocks of section 4: convolution + ReLU, the Inception module (Figure 2), the auxiliary head."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class ConvBlock(nn.Sequential):
    """A convolution followed by ReLU, with BatchNorm in between when `bn_eps` is given.

    The paper puts a ReLU after every convolution, reductions and projections included (section 5).
    With BatchNorm the convolution has no bias, as the BN shift replaces it.
    """

    if TYPE_CHECKING:  # for mypy alone: torch.jit.script cannot read these annotations (strings)
        conv: nn.Conv2d
        bn: nn.BatchNorm2d  # only with `bn_eps`
        relu: nn.ReLU

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bn_eps: float | None = None,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bn_eps is None)
        if bn_eps is not None:
            layers["bn"] = nn.BatchNorm2d(out_channels, eps=bn_eps)
        layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)
        self.out_channels = out_channels


ConvFactory = Callable[..., ConvBlock]


class ParallelBranches(nn.Module):
    """Figure 2's shape: 1x1, 3x3, 5x5 and pooling paths side by side, outputs concatenated on channels."""

    if TYPE_CHECKING:  # for mypy alone: torch.jit.script cannot read these annotations (strings)
        branch1x1: nn.Module
        branch3x3: nn.Module
        branch5x5: nn.Module
        branch_pool: nn.Module

    grad_checkpointing = False  # recompute the branches in the backward pass (set_grad_checkpointing)

    def branches(self) -> list[nn.Module]:
        """The four parallel paths, in the order their outputs are concatenated."""
        return [self.branch1x1, self.branch3x3, self.branch5x5, self.branch_pool]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # noqa: SIM102 (nested: TorchScript leaves out a statically false branch)
            if self.grad_checkpointing and torch.is_grad_enabled():
                return checkpoint(self._concatenated, x, use_reentrant=False)
        return self._concatenated(x)

    def _concatenated(self, x: torch.Tensor) -> torch.Tensor:
        # The four branches by name, not through branches(): TorchScript calls submodules by attribute only.
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], dim=1)


class Inception(ParallelBranches):
    """The Inception module with dimension reductions (Figure 2b), one row of Table 1.

    Arguments are the Table 1 columns: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
    `kernel_5x5=3` gives torchvision's layout, whose "5x5" branch is a 3x3 convolution.
    """

    if TYPE_CHECKING:  # for mypy alone: torch.jit.script cannot read these annotations (strings)
        branch1x1: ConvBlock
        branch3x3: nn.Sequential  # reduce, conv: ConvBlocks
        branch5x5: nn.Sequential  # reduce, conv: ConvBlocks
        branch_pool: nn.Sequential  # pool: MaxPool2d, proj: ConvBlock

    def __init__(
        self,
        in_channels: int,
        n1x1: int,
        n3x3_reduce: int,
        n3x3: int,
        n5x5_reduce: int,
        n5x5: int,
        pool_proj: int,
        conv: ConvFactory = ConvBlock,
        kernel_5x5: int = 5,
    ) -> None:
        super().__init__()
        self.branch1x1 = conv(in_channels, n1x1, 1)
        self.branch3x3 = nn.Sequential(
            OrderedDict(reduce=conv(in_channels, n3x3_reduce, 1), conv=conv(n3x3_reduce, n3x3, 3, padding=1))
        )
        self.branch5x5 = nn.Sequential(
            OrderedDict(
                reduce=conv(in_channels, n5x5_reduce, 1),
                conv=conv(n5x5_reduce, n5x5, kernel_5x5, padding=kernel_5x5 // 2),
            )
        )
        self.branch_pool = nn.Sequential(
            OrderedDict(pool=nn.MaxPool2d(3, stride=1, padding=1), proj=conv(in_channels, pool_proj, 1))
        )
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj


class NaiveInception(ParallelBranches):
    """The naive Inception module (Figure 2a): 1x1, 3x3 and 5x5 convolutions and a 3x3 max pool, side by side.

    Without reductions the pool branch passes all `in_channels` through, so widths grow from stage to
    stage and the 3x3/5x5 convolutions see the full input depth: section 4's "computational blow up".
    """

    def __init__(self, in_channels: int, n1x1: int, n3x3: int, n5x5: int, conv: ConvFactory = ConvBlock) -> None:
        super().__init__()
        self.branch1x1 = conv(in_channels, n1x1, 1)
        self.branch3x3 = conv(in_channels, n3x3, 3, padding=1)
        self.branch5x5 = conv(in_channels, n5x5, 5, padding=2)
        self.branch_pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.out_channels = n1x1 + n3x3 + n5x5 + in_channels


class AuxHead(nn.Module):
    """An auxiliary classifier on 4a or 4d (section 5): avgpool 5x5/3, 1x1 conv 128, FC 1024, dropout 70%, linear.

    `pool="paper"` uses the paper's 5x5/3 average pool, rounded up as Caffe rounds, whenever it yields the 4x4
    grid the FC layer was built for (feature maps of 12 to 14 pixels, i.e. inputs near 224 and below; Caffe's
    5x5 grid at 15-16 would not fit the FC layer). On any other map size, and always
    with `pool="adaptive"` (torchvision's choice), the map is average-pooled adaptively to 4x4 instead,
    so the same weights serve every input size; see docs/model.md.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        conv: ConvFactory = ConvBlock,
        reduce: int = 128,
        hidden: int = 1024,
        dropout: float = 0.7,
        pool: str = "paper",
    ) -> None:
        super().__init__()
        if pool not in ("paper", "adaptive"):
            raise ValueError(f"aux pool must be 'paper' or 'adaptive', not {pool!r}")
        self.pool = pool
        self.conv = conv(in_channels, reduce, 1)
        self.fc = nn.Linear(reduce * 4 * 4, hidden)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.pool == "paper" and 12 <= h <= 14 and 12 <= w <= 14:
            x = F.avg_pool2d(x, 5, stride=3, ceil_mode=True)  # N x C x 4 x 4, Caffe's rounding
        else:
            x = F.adaptive_avg_pool2d(x, 4)
        x = torch.flatten(self.conv(x), 1)  # N x 2048
        x = self.dropout(F.relu(self.fc(x), inplace=True))  # N x 1024
        return self.linear(x)


CHUNK_ELEMENTS = 1 << 20  # LRN without autograd runs on this many elements at a time (4 MB in float32: in cache)


class LocalResponseNorm(nn.LocalResponseNorm):
    """Caffe's LRN across channels: b_c = a_c / (k + alpha/size * sum of a_j^2 over the `size` channels j centred
    on c, zero beyond the ends)^beta; `size`, `alpha`, `beta`, `k` as in nn.LocalResponseNorm, which divides
    alpha by the window size as Caffe does.

    Computed in a fast form. Run as PyTorch operations (training, inference, torch.compile): each channel's term
    k/size + alpha/size * a^2 in one pass, padded with k/size beyond the ends, the window's sum as `size` shifted
    channel slices of it added (no pooling in 3-D, no division, and under torch.compile one fused loop); with
    beta 0.75 the power is a reciprocal square root and a square root (vectorised on every CPU, where pow is not).
    Without autograd the passes after the first are in place, on a few images at a time (`_inference`). Exported
    (torch.jit.trace, torch.export: ONNX, ExecuTorch) the window sum is a 1x1 convolution of a*a with a fixed
    banded matrix (alpha/size on the band, k as its bias), which onnxruntime, OpenVINO and XNNPACK run as their
    fastest kernels where ONNX's LRN op is a slow one. The banded matrix is a buffer outside the state_dict: the
    weights are those of nn.LocalResponseNorm (none)."""

    if TYPE_CHECKING:  # for mypy alone: torch.jit.script cannot read these annotations (strings)
        band: torch.Tensor
        shift: torch.Tensor

    def __init__(self, channels: int, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__(size, alpha, beta, k)
        c = torch.arange(channels)
        offset = c[None, :] - c[:, None]  # [c, j]: j - c
        window = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)  # nn.LocalResponseNorm's (and Caffe's) window
        dtype = torch.get_default_dtype()  # as parameters are made; alpha/size rounded once, to that precision
        self.register_buffer("band", (window.double() * (alpha / size)).to(dtype)[:, :, None, None], persistent=False)
        self.register_buffer("shift", torch.full((channels,), float(k), dtype=dtype), persistent=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if torch.jit.is_tracing() or torch.compiler.is_exporting():
                band, shift = self.band.to(input.dtype), self.shift.to(input.dtype)
                return self._power(F.conv2d(input * input, band, shift), input)
            autograd = torch.is_grad_enabled() and input.requires_grad
            if input.dim() == 4 and not (autograd or torch.compiler.is_compiling()):
                return self._inference(input)  # torch.compile fuses the passes below into one loop itself
        channels, size = input.shape[1], self.size
        term = torch.addcmul(input.new_full((), self.k / size), input, input, value=self.alpha / size)
        padded = F.pad(term, (0, 0, 0, 0, size // 2, (size - 1) // 2), value=self.k / size)  # the memory format kept
        scale = padded[:, :channels] + padded[:, 1 : 1 + channels] if size > 1 else term
        for j in range(2, size):
            scale = scale + padded[:, j : j + channels]
        return self._power(scale, input)

    def _inference(self, input: torch.Tensor) -> torch.Tensor:
        """The same passes without autograd, in place, a few images at a time so that they stay in the CPU's cache
        (`CHUNK_ELEMENTS`): 4x faster than whole-batch passes at batch 16 on the paper's norm2. The channels are
        the last dimension of a channels_last tensor's permuted view, so every pass is over contiguous rows and
        the padding is `size - 1` columns, not whole planes."""
        size, lead, pad = self.size, self.size // 2, self.k / self.size
        nhwc = input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()
        out = torch.empty_like(input)
        x, y = (input.permute(0, 2, 3, 1), out.permute(0, 2, 3, 1)) if nhwc else (input, out)
        dim, channels = (3 if nhwc else 1), input.shape[1]
        step = max(1, CHUNK_ELEMENTS // max(1, input[0].numel()))
        for start in range(0, input.shape[0], step):
            xs, scale = x[start : start + step], y[start : start + step]
            shape = list(xs.shape)
            shape[dim] += size - 1
            padded = xs.new_empty(shape)  # k/size beyond the end channels, k/size + alpha/size * x^2 between
            padded.narrow(dim, 0, lead).fill_(pad)
            padded.narrow(dim, lead + channels, size - 1 - lead).fill_(pad)
            body = padded.narrow(dim, lead, channels)
            torch.addcmul(padded.new_full((), pad), xs, xs, value=self.alpha / size, out=body)
            if size > 1:
                torch.add(padded.narrow(dim, 0, channels), padded.narrow(dim, 1, channels), out=scale)
            else:
                scale.copy_(body)
            for j in range(2, size):
                scale.add_(padded.narrow(dim, j, channels))
            if self.beta == 0.75:
                scale.rsqrt_()
                scale.mul_(torch.sqrt(scale)).mul_(xs)  # a fresh root: into a strided view, sqrt is 10x slower
            else:
                scale.pow_(-self.beta).mul_(xs)
        return out

    def _power(self, scale: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
        """input * scale^-beta; with beta 0.75, d^-3/4 = d^-1/2 * (d^-1/2)^1/2, 5x faster than pow on the CPU."""
        if self.beta == 0.75:
            root = scale.rsqrt()
            return input * (root * root.sqrt())
        return input * scale.pow(-self.beta)

    def extra_repr(self) -> str:
        return f"{self.band.shape[0]}, " + super().extra_repr()


def local_response_norm(channels: int) -> LocalResponseNorm:
    """LRN with the reference Caffe model's values (size 5, alpha 1e-4, beta 0.75, k 1) over `channels`."""
    return LocalResponseNorm(channels, 5, alpha=1e-4, beta=0.75, k=1.0)
