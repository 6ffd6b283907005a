"""The inference path: BatchNorm folded and each Inception's 1x1 convolutions fused give the model's logits."""

import json

import pytest
import torch
from torch import nn

from googlenet.model.inference import FusedInception, concat_convs, fold_block, optimize_for_inference
from googlenet.model.layers import ConvBlock, Inception

from conftest import ROUNDING_FACTOR, UNIT_ROUNDOFF, assert_float32_close, float32_rounding, forward, trained_like


@pytest.mark.parametrize("name", ["googlenet", "googlenet_bn", "googlenet_tv"])
def test_optimized_model_gives_the_same_logits_features_and_head(name):
    model = trained_like(name)
    fast = optimize_for_inference(model)
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        assert model(x).abs().max() > 0.1  # something to compare
        assert_float32_close(fast(x), forward, model, x)
        assert_float32_close(fast(x.contiguous(memory_format=torch.channels_last)), forward, model, x)
        assert_float32_close(fast.forward_features(x), lambda m, x: m.forward_features(x), model, x)
        pooled = fast.forward_head(fast.forward_features(x), pre_logits=True)
        assert_float32_close(pooled, lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True), model, x)


def test_optimized_model_has_no_batchnorm_and_one_wide_1x1_per_inception():
    model = trained_like("googlenet_bn", aux=True)
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, (nn.BatchNorm2d, Inception, ConvBlock)) for m in fast.modules())
    assert fast.aux1 is None and fast.aux2 is None and not fast.training
    a, b = model.inception_3a, fast.inception_3a
    assert isinstance(b, FusedInception)
    width = a.branch1x1.conv.out_channels + a.branch3x3.reduce.conv.out_channels + a.branch5x5.reduce.conv.out_channels
    assert b.reduce[0].out_channels == width and b.reduce[0].kernel_size == (1, 1)
    assert fast.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.meta is model.meta
    # The original is left as it was, heads and BatchNorm included.
    assert model.aux1 is not None and isinstance(model.inception_3a.branch1x1.bn, nn.BatchNorm2d)


def test_fold_and_concat_are_exact_per_layer():
    block = ConvBlock(8, 6, 3, padding=1, bn_eps=1e-3)
    block.bn.running_mean.normal_()
    block.bn.running_var.uniform_(0.2, 3)
    block.bn.weight.data.uniform_(0.5, 2)
    block.eval()
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        folded = fold_block(block)
        assert_float32_close(folded(x), forward, block, x)
        folded[0].weight.mul_(1 + 1e-4)  # a folding that is off by one part in 10^4 is caught
        with pytest.raises(AssertionError, match="off by"):
            assert_float32_close(folded(x), forward, block, x)
        convs = nn.ModuleList(nn.Conv2d(8, n, 1, bias=n != 3) for n in (4, 3, 5))
        wide = concat_convs(list(convs))(x)
        assert_float32_close(wide, lambda convs, x: torch.cat([c(x) for c in convs], 1), convs, x)


def _profiled(run) -> dict[str, int]:
    """{operator: calls} of run()."""
    with torch.profiler.profile() as prof:
        run()
    return {event.key: event.count for event in prof.key_averages()}


@pytest.fixture
def two_threads():
    """PyTorch picks its own single-threaded kernel for a 1x1 convolution at batches under 16 on purpose
    (faster on one thread, its Convolution.cpp says): the check is made with two threads, as on a 2-core CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_bn"])
def test_no_convolution_takes_pytorchs_slow_path(name, two_threads):
    """At 224 px and batch 1, F.conv2d runs inception_4a's, 5a's and 5b's 3x3 convolutions (small maps) as
    aten::_slow_conv2d_forward; the inference model runs every convolution on oneDNN, and training at batch 2
    does too."""
    model = trained_like(name, aux=True)
    image = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert "aten::_slow_conv2d_forward" in _profiled(lambda: model.eval()(image))  # what is avoided
        fast = optimize_for_inference(model)
        calls = _profiled(lambda: fast(image))
    assert not [op for op in calls if "slow_conv" in op], calls
    assert calls["mkldnn::_convolution_pointwise"] == 3 + 9 * 4  # conv1, conv2's two; 9 x (wide 1x1, 3x3, 5x5, proj)

    model.train()
    batch = torch.randn(2, 3, 96, 96).contiguous(memory_format=torch.channels_last)

    def step():
        out = model(batch, return_aux=True)
        (out.logits.sum() + out.aux1.sum() + out.aux2.sum()).backward()

    assert not [op for op in _profiled(step) if "slow_conv" in op]


def test_the_fast_path_leaves_autograd_tracing_and_copies_to_plain_ops(tmp_path):
    import copy
    import pickle

    model = trained_like("googlenet", aux=False)
    fast = optimize_for_inference(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = fast(x)  # the oneDNN path: conv1 keeps its reordered weights for this shape
    assert fast.conv1._packed
    # Copies and pickles (worker processes) carry no oneDNN tensors; they reorder again on their first call.
    for other in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert not other.conv1._packed
        with torch.inference_mode():
            assert_float32_close(other(x), forward, model, x)
    # With autograd (Grad-CAM, input gradients) the plain operations run, and gradients flow.
    image = x.clone().requires_grad_()
    fast(image).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    # A trace (TorchScript export) records the plain convolution, which every runtime knows.
    with torch.no_grad():
        graph = str(torch.jit.trace(fast, x).inlined_graph)
    assert "aten::_convolution" in graph and "mkldnn" not in graph
    assert_float32_close(expected, forward, model, x)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_bn"])
def test_bfloat16_inference_model_is_within_bfloat16_rounding(name):
    """optimize_for_inference(dtype=bfloat16) stores and computes in bfloat16, takes and returns float32; its
    logits are as far from the exact ones as float32's are, scaled by the ratio of the two unit roundoffs (rounding
    errors grow linearly with it), with ROUNDING_FACTOR's margin."""
    model = trained_like(name)
    x = torch.randn(4, 3, 64, 64) * 2 + 0.5
    exact, rounding = float32_rounding(forward, model, x)
    with torch.inference_mode():
        fast = optimize_for_inference(model, dtype=torch.bfloat16)
        got = fast(x)
    assert {p.dtype for p in fast.parameters()} == {torch.bfloat16} and got.dtype == torch.float32
    ratio = torch.finfo(torch.bfloat16).eps / torch.finfo(torch.float32).eps  # 2**16
    allowed = ROUNDING_FACTOR * rounding * ratio + ratio * UNIT_ROUNDOFF * float(exact.abs().max())
    assert float((got.double() - exact).abs().max()) <= allowed
    assert next(model.parameters()).dtype == torch.float32  # the model itself untouched
    with pytest.raises(ValueError, match="inference dtype"):
        optimize_for_inference(model, dtype=torch.float16)


def test_predict_takes_a_precision(tmp_path, capsys):
    """--precision bf16 reaches the model the commands load (load_for_inference) and predict runs with it; a
    bf16 eager model is no form the commands have: one line."""
    from PIL import Image

    from googlenet import save_weights
    from googlenet.cli import main
    from googlenet.model import load_for_inference

    path = str(save_weights(trained_like("googlenet"), tmp_path / "tiny.safetensors"))
    loaded = load_for_inference(path, precision="bf16")
    assert isinstance(loaded, nn.Module) and {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    image = tmp_path / "a.png"
    pixels = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    Image.fromarray((pixels * 255).byte().numpy()).save(image)
    for precision in ("fp32", "bf16"):
        assert main(["predict", "--checkpoint", path, str(image), "--json", "--precision", precision]) == 0
        assert len(json.loads(capsys.readouterr().out)[0]["predictions"]) == 5
    assert main(["predict", "--checkpoint", path, str(image), "--no-optimize", "--precision", "bf16"]) == 2
    assert "--no-optimize" in capsys.readouterr().err
