"""The paper's LRN (model.layers.LocalResponseNorm, a 1x1 convolution of the squares with a banded matrix) against
Caffe's formula in float64: forward and backward, in training and in every form the network runs in (TorchScript,
torch.compile, ONNX in onnxruntime, ExecuTorch). Each float32 bound is counted from the operations (u = 2**-24,
the unit roundoff; pow within 1 ulp = 2u): the window's terms x*x*(alpha/size) carry 3u each, the sum of `size`
of them and k adds `size` u, so the denominator d is within (size+3)u; d**-beta within beta*(size+3)u + 2u and
the product with x one u more. With beta 0.75, d**-beta is r * sqrt(r), r = rsqrt(d) (1/sqrt: 2u): 1.5 * 2u from
r, 1u from the square root and 1u from each of the two products, 6u in all beside beta*(size+3)u."""

from __future__ import annotations

import pytest
import torch

from googlenet.model import layers
from googlenet.model.formats.executorch import executorch_missing
from googlenet.model.layers import LocalResponseNorm, local_response_norm

U32, U64 = 2.0**-24, 2.0**-53
SIZE, ALPHA, BETA, K = 5, 1e-4, 0.75, 1.0


def window_sum(values: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Caffe's window over channels: for channel c the sum of values_j for j from c - (size-1)/2 to
    c + size - 1 - (size-1)/2, clipped at the ends."""
    channels, pre = values.shape[1], (size - 1) // 2
    return torch.stack([values[:, max(0, c - pre) : min(channels, c - pre + size)].sum(1) for c in range(channels)], 1)


def caffe_lrn(x: torch.Tensor, size: int = SIZE, alpha: float = ALPHA, beta: float = BETA, k: float = K):
    """Caffe's LRNLayer (ACROSS_CHANNELS) written out in float64: scale = k + alpha/size * window_sum(x^2);
    y = x * scale^-beta."""
    x = x.double()
    return x * (k + alpha / size * window_sum(x * x, size)).pow(-beta)


def forward_bound(u: float) -> float:
    """Relative bound of one output element, counted as in the module's docstring."""
    return (BETA * (SIZE + 3) + 6) * u * (1 + 1e-3)  # the last factor: the O(u^2) terms


def backward_scale(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The sum of the gradient's terms' magnitudes, per element (float64): |g p| with p = d^-beta, and
    2 alpha beta / size * |x_c| * sum over c's window of |g_j x_j| d_j^(-beta-1). A float computation of the
    gradient is within a multiple of u of this, whatever cancels between the two terms."""
    x, g = x.double(), g.double()
    d = K + ALPHA / SIZE * window_sum(x * x)
    window = window_sum((g * x).abs() * d.pow(-BETA - 1))  # the window is symmetric for an odd size
    return (g * d.pow(-BETA)).abs() + 2 * ALPHA * BETA / SIZE * x.abs() * window


def backward_bound(u: float) -> float:
    """The backward pass's rounding, counted like the forward: d**(-beta-1) within (beta+1)(size+3)u + 2u, the
    products to it and the band 4u, the window's transposed sum `size` u, the product with x and the final sum
    with g p 2u (the g p term alone is within the forward's bound). The rsqrt form reaches d**(-beta-1) through
    r**3 and sqrt(r) (3 * 2u from r, 1u from the root, 4u from its products): 8u more."""
    return ((BETA + 1) * (SIZE + 3) + SIZE + 16) * u * (1 + 1e-3)


@pytest.fixture
def activations():
    """Activations like the stem's after ReLU: non-negative, zeros included, up to about a hundred."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 24, 9, 11, generator=g) * 30).relu()


def assert_relative(got: torch.Tensor, exact: torch.Tensor, bound: float, scale: torch.Tensor | None = None):
    scale = exact.abs() if scale is None else scale
    off = ((got.double() - exact).abs() - bound * scale).max()
    ratio = float(((got.double() - exact).abs() / scale.clamp_min(1e-300)).max())
    assert off <= 0, f"{ratio:.3g} relative off Caffe's formula, bound {bound:.3g}"


def lrn_in(dtype: torch.dtype, channels: int = 24) -> LocalResponseNorm:
    """The module made in `dtype`, as a model made under that default dtype is (its band rounded once)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return LocalResponseNorm(channels)
    finally:
        torch.set_default_dtype(default)


def test_lrn_equals_caffes_formula_in_float64_and_float32(activations):
    lrn = LocalResponseNorm(24)
    exact = caffe_lrn(activations)
    assert_relative(lrn_in(torch.float64)(activations.double()), exact, forward_bound(U64))
    assert_relative(lrn(activations), exact, forward_bound(U32))
    # The same numbers as PyTorch's own LRN (whose window it copies), and no state of its own in the weights.
    reference = torch.nn.functional.local_response_norm(activations.double(), SIZE, ALPHA, BETA, K)
    assert_relative(reference, exact, forward_bound(U64) * 4)
    assert lrn.state_dict() == {} and local_response_norm(24).band.shape == (24, 24, 1, 1)


@pytest.mark.parametrize("layout", ["autograd", "nchw", "channels_last", "channels_last_chunked", "nchw_chunked"])
def test_lrn_equals_caffes_formula_in_each_path(layout, activations, monkeypatch):
    """Training's passes (autograd) and inference's in-place ones, over NCHW and channels_last tensors, whole or a
    few images at a time (the chunk set here to under one image's worth, so that every image is a chunk)."""
    if layout.endswith("chunked"):
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", activations[0].numel() - 1)
    x = activations.repeat(3, 1, 1, 1)  # 6 images
    if layout.startswith("channels_last"):
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(layout == "autograd")
    got = LocalResponseNorm(24)(x)
    assert_relative(got.detach(), caffe_lrn(x.detach()), forward_bound(U32))
    layout_kept = torch.channels_last if "channels_last" in layout else torch.contiguous_format
    assert got.is_contiguous(memory_format=layout_kept)


@pytest.mark.parametrize("autograd", [False, True])
def test_lrn_window_for_even_sizes_is_pytorchs(autograd):
    x = (torch.rand(2, 7, 3, 3, dtype=torch.float64) * 10).requires_grad_(autograd)
    for size in (1, 2, 4, 7):
        ours = LocalResponseNorm(7, size, alpha=0.5, beta=0.6, k=2.0).double()(x)
        torch.testing.assert_close(ours, torch.nn.functional.local_response_norm(x, size, 0.5, 0.6, 2.0))


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channels_last_chunked", "nchw_chunked", "mixed"])
def test_lrn_backward_equals_caffes_formulas_gradient(layout, activations, monkeypatch):
    """Training's autograd Function (Caffe's backward formula), over each layout, whole or an image at a time;
    "mixed": a channels_last input whose incoming gradient is NCHW."""
    if layout.endswith("chunked"):
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", activations[0].numel() - 1)
    g = torch.randn(activations.shape, generator=torch.Generator().manual_seed(1))
    x64 = activations.double().requires_grad_()
    (caffe_lrn(x64) * g.double()).sum().backward()
    scale = backward_scale(activations, g)
    memory = torch.contiguous_format if layout.startswith("nchw") else torch.channels_last
    if layout != "mixed":
        g = g.contiguous(memory_format=memory)
    for dtype, u in ((torch.float64, U64), (torch.float32, U32)):
        x = activations.to(dtype).contiguous(memory_format=memory).requires_grad_()
        (lrn_in(dtype)(x) * g.to(dtype)).sum().backward()
        assert x.grad is not None
        assert_relative(x.grad, x64.grad, backward_bound(u), scale)


def test_lrn_backward_for_even_sizes_and_other_powers_is_pytorchs():
    """The transposed window of an even size (one channel more behind than in front) and beta other than 0.75."""
    x = (torch.rand(2, 7, 3, 3, dtype=torch.float64) * 10).requires_grad_()
    g = torch.randn(2, 7, 3, 3, dtype=torch.float64)
    for size in (1, 2, 4, 7):
        ours = torch.autograd.grad((LocalResponseNorm(7, size, 0.5, 0.6, 2.0).double()(x) * g).sum(), x)[0]
        theirs = torch.autograd.grad((torch.nn.functional.local_response_norm(x, size, 0.5, 0.6, 2.0) * g).sum(), x)
        torch.testing.assert_close(ours, theirs[0])


def test_the_paper_network_trains_with_the_fast_lrn():
    """Its two LRNs are the fast form, and a training step's gradients reach the stem through them."""
    from googlenet import build_model

    model = build_model("googlenet", num_classes=10, width=0.25)
    assert [type(m) for m in (model.norm1, model.norm2)] == [LocalResponseNorm] * 2
    out = model(torch.randn(2, 3, 64, 64), return_aux=True)
    (out.logits.sum() + out.aux1.sum() + out.aux2.sum()).backward()
    assert model.conv1.conv.weight.grad is not None and model.conv1.conv.weight.grad.abs().sum() > 0


def _exported(kind: str, module: torch.nn.Module, x: torch.Tensor, tmp_path):
    """`module` as it runs in `kind`: a callable on x."""
    if kind == "torchscript":
        with torch.no_grad():
            return torch.jit.freeze(torch.jit.trace(module.eval(), x))
    if kind == "compile":
        return torch.compile(module)
    if kind == "onnx":
        import onnxruntime as ort

        path = tmp_path / "lrn.onnx"
        program = torch.onnx.export(module, (x,), dynamo=True, input_names=["x"], verbose=False)
        assert program is not None
        program.save(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: torch.from_numpy(session.run(None, {"x": images.numpy()})[0])
    if kind == "executorch":  # lowered to XNNPACK as `googlenet export --format executorch` lowers the network
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

        with torch.no_grad():
            exported = torch.export.export(module, (x,))
            program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
        path = tmp_path / "lrn.pte"
        path.write_bytes(program.buffer)
        method = Runtime.get().load_program(path).load_method("forward")
        return lambda images: method.execute((images.contiguous(),))[0]
    raise AssertionError(kind)


EXECUTORCH = pytest.mark.skipif(bool(executorch_missing()), reason=executorch_missing() or "")


@pytest.mark.parametrize("kind", ["torchscript", "compile", "onnx", pytest.param("executorch", marks=EXECUTORCH)])
def test_lrn_in_each_runtime_equals_caffes_formula(kind, activations, tmp_path):
    run = _exported(kind, LocalResponseNorm(24).eval(), activations, tmp_path)
    with torch.no_grad():
        assert_relative(run(activations), caffe_lrn(activations), forward_bound(U32))


def test_the_paper_network_computes_what_it_computed_with_pytorchs_lrn():
    """Old against new: the network with nn.LocalResponseNorm (before this form) gives the logits and the
    gradients of the new one to float32 rounding (conftest's bound: the measured rounding of the computation)."""
    import copy

    from conftest import assert_float32_close, trained_like

    new = trained_like("googlenet", aux=False).eval()
    old = copy.deepcopy(new)
    old.norm1, old.norm2 = (torch.nn.LocalResponseNorm(SIZE, ALPHA, BETA, K) for _ in range(2))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 50  # LRN far from the identity
    stem = new.pool1(new.conv1(x)).detach()
    assert float((new.norm1(stem) - stem).abs().max()) > 0.1 * float(stem.abs().max())

    def logits(model, images):
        return model(images)

    def gradient(model, images):  # of a loss through every layer, at the first convolution's weights
        with torch.enable_grad():
            return torch.autograd.grad(model(images).square().sum(), model.conv1.conv.weight)[0]

    with torch.no_grad():
        assert_float32_close(old(x), logits, new, x)
    assert_float32_close(gradient(old, x), gradient, new, x, terms=2 * 32 * 32)  # each sums N x 32 x 32 positions
