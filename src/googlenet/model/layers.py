"""The building blocks of section 4: convolution + ReLU, the Inception module (Figure 2), the auxiliary head."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
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
    The passes after the first are in place, on a few images at a time, in training (one autograd Function with
    Caffe's backward formula: no graph of the passes) and outside it (`_lrn_forward`). Exported
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
            if input.dim() == 4 and not torch.compiler.is_compiling():  # torch.compile fuses the passes below itself
                if torch.is_grad_enabled() and input.requires_grad:
                    return _LRN.apply(input, self.size, self.alpha, self.beta, self.k)
                return _lrn_forward(input, self.size, self.alpha, self.beta, self.k)[0]
        channels, size = input.shape[1], self.size
        term = torch.addcmul(input.new_full((), self.k / size), input, input, value=self.alpha / size)
        padded = F.pad(term, (0, 0, 0, 0, size // 2, (size - 1) // 2), value=self.k / size)  # the memory format kept
        scale = padded[:, :channels] + padded[:, 1 : 1 + channels] if size > 1 else term
        for j in range(2, size):
            scale = scale + padded[:, j : j + channels]
        return self._power(scale, input)

    def _power(self, scale: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
        """input * scale^-beta; with beta 0.75, d^-3/4 = d^-1/2 * (d^-1/2)^1/2, 5x faster than pow on the CPU."""
        if self.beta == 0.75:
            root = scale.rsqrt()
            return input * (root * root.sqrt())
        return input * scale.pow(-self.beta)

    def extra_repr(self) -> str:
        return f"{self.band.shape[0]}, " + super().extra_repr()


def _is_channels_last(t: torch.Tensor) -> bool:
    """Whether `t` is laid out channels_last (and not also plainly contiguous, as a 1x1 map or one channel is)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _channels_last_view(t: torch.Tensor, nhwc: bool) -> torch.Tensor:
    """`t` with its channels where they are contiguous: the last dimension of a channels_last tensor's permuted
    view (N, H, W, C), so that every pass runs over contiguous rows; a plain tensor as it is (channels at dim 1)."""
    return t.permute(0, 2, 3, 1) if nhwc else t


def _chunks(*tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The tensors (N first) cut into the same few images at a time, about CHUNK_ELEMENTS each: every pass of a
    chunk then reads what the pass before it left in the cache."""
    step = max(1, CHUNK_ELEMENTS // max(1, tensors[0][0].numel()))
    return [tuple(t[start : start + step] for t in tensors) for start in range(0, tensors[0].shape[0], step)]


def _window_sum(values: torch.Tensor, dim: int, size: int, lead: int, out: torch.Tensor) -> torch.Tensor:
    """out[c] = the sum of values[j] for j from c - lead to c - lead + size - 1 along `dim`, beyond the ends what
    `values` was padded with: `values` has `size - 1` more channels than `out`, `lead` of them in front."""
    channels = out.shape[dim]
    if size == 1:
        return out.copy_(values)
    torch.add(values.narrow(dim, 0, channels), values.narrow(dim, 1, channels), out=out)
    for j in range(2, size):
        out.add_(values.narrow(dim, j, channels))
    return out


def _padded(like: torch.Tensor, dim: int, size: int, lead: int, fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A buffer with `size - 1` more channels than `like` along `dim`, `fill` in the `lead` front and the other back
    ones, and its body (the view of `like`'s shape between them)."""
    shape = list(like.shape)
    channels, shape[dim] = shape[dim], shape[dim] + size - 1
    padded = like.new_empty(shape)
    padded.narrow(dim, 0, lead).fill_(fill)
    padded.narrow(dim, lead + channels, size - 1 - lead).fill_(fill)
    return padded, padded.narrow(dim, lead, channels)


def _lrn_forward(
    input: torch.Tensor, size: int, alpha: float, beta: float, k: float, keep: bool = False
) -> tuple[torch.Tensor, ...]:
    """LRN of a 4-D tensor outside autograd, in place, a few images at a time: y, and with `keep` also what the
    backward pass needs, p = d^-beta and q = d^(-beta-1), d = k + alpha/size * the window's sum of x^2 (its terms
    k/size + alpha/size * x^2, padded with k/size). With beta 0.75: r = rsqrt(d), p = r * sqrt(r), q = p * r^2."""
    nhwc = _is_channels_last(input)
    dim, pad = (3 if nhwc else 1), k / size
    outputs = [torch.empty_like(input) for _ in range(3 if keep else 1)]
    views = [_channels_last_view(t, nhwc) for t in (input, *outputs)]
    for chunk in _chunks(*views):
        x, y = chunk[0], chunk[1]
        padded, body = _padded(x, dim, size, size // 2, pad)
        torch.addcmul(padded.new_full((), pad), x, x, value=alpha / size, out=body)
        if not keep:
            scale = _window_sum(padded, dim, size, size // 2, y)
            if beta == 0.75:
                scale.rsqrt_()
                scale.mul_(torch.sqrt(scale)).mul_(x)  # a fresh root: into a strided view, sqrt is 10x slower
            else:
                scale.pow_(-beta).mul_(x)
            continue
        p, q = chunk[2], chunk[3]
        d = _window_sum(padded, dim, size, size // 2, q)
        if beta == 0.75:
            r = d.rsqrt_()
            torch.sqrt(r, out=p).mul_(r)
            r.mul_(r).mul_(p)  # q = r^2 * p, in r's place
        else:
            torch.pow(d, -beta, out=p)
            torch.div(p, d, out=q)
        torch.mul(x, p, out=y)
    return tuple(outputs)


def _lrn_backward(
    grad: torch.Tensor, x: torch.Tensor, p: torch.Tensor, q: torch.Tensor, size: int, alpha: float, beta: float
) -> torch.Tensor:
    """dL/dx of LRN, Caffe's formula: g_i p_i - (2 alpha beta / size) x_i * the sum of g_c x_c q_c over the outputs
    c whose window holds i (the window transposed), a few images at a time."""
    nhwc = _is_channels_last(x)
    grad = grad.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
    dim, lead = (3 if nhwc else 1), (size - 1) // 2  # the transposed window: (size-1)//2 in front, size//2 behind
    out = torch.empty_like(x)
    views = [_channels_last_view(t, nhwc) for t in (grad, x, p, q, out)]
    for g, xs, ps, qs, dx in _chunks(*views):
        padded, body = _padded(xs, dim, size, lead, 0.0)
        torch.mul(g, xs, out=body).mul_(qs)
        _window_sum(padded, dim, size, lead, dx).mul_(xs).mul_(-2 * alpha * beta / size).addcmul_(g, ps)
    return out


class _LRN(torch.autograd.Function):
    """LRN in training: the forward and backward passes above, saving x, p and q (no graph of its passes)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        y, p, q = _lrn_forward(input, size, alpha, beta, k, keep=True)
        ctx.save_for_backward(input, p, q)
        ctx.constants = size, alpha, beta
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, p, q = ctx.saved_tensors
        return _lrn_backward(grad, x, p, q, *ctx.constants), None, None, None, None


def local_response_norm(channels: int) -> LocalResponseNorm:
    """LRN with the reference Caffe model's values (size 5, alpha 1e-4, beta 0.75, k 1) over `channels`."""
    return LocalResponseNorm(channels, 5, alpha=1e-4, beta=0.75, k=1.0)
