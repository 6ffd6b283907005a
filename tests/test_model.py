import math

import pytest
import torch
from torch import nn

from googlenet import GoogLeNet, GoogLeNetOutputs, Inception, NaiveInception, build_model, list_models

from conftest import TABLE1_224, stage_outputs

# At 32x32 every 3x3/2 ceil pool still halves: 16 -> 8 -> 4 -> 2 -> 1.
SIDE_32 = {
    "conv1": 16,
    "pool1": 8,
    "norm1": 8,
    "conv2": 8,
    "norm2": 8,
    "pool2": 4,
    "inception_3a": 4,
    "inception_3b": 4,
    "pool3": 2,
    "inception_4a": 2,
    "inception_4b": 2,
    "inception_4c": 2,
    "inception_4d": 2,
    "inception_4e": 2,
    "pool4": 1,
    "inception_5a": 1,
    "inception_5b": 1,
    "avgpool": 1,
}


@pytest.fixture(scope="module")
def paper():
    return build_model("googlenet")


def test_every_stage_matches_table1_at_224(paper):
    assert stage_outputs(paper, 224) == TABLE1_224


def test_every_stage_at_32(paper):
    shapes = stage_outputs(paper, 32)
    for name, side in SIDE_32.items():
        assert shapes[name] == (TABLE1_224[name][0], side, side), name
    assert shapes["linear"] == (1000,)


@pytest.mark.parametrize("name", ["googlenet_bn", "googlenet_tv"])
def test_variants_keep_table1_shapes(name):
    shapes = stage_outputs(build_model(name), 224)
    assert {k: v for k, v in shapes.items() if k in TABLE1_224} == TABLE1_224


def test_inception_3a_is_figure_2b_with_table1_widths():
    m = Inception(192, 64, 96, 128, 16, 32, 32)
    assert m.branch5x5.conv.conv.kernel_size == (5, 5)
    weights = sum(p.numel() for n, p in m.named_parameters() if n.endswith("weight"))
    assert weights == 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32 == 163_328
    assert m(torch.zeros(2, 192, 28, 28)).shape == (2, 256, 28, 28)
    # ReLU after every convolution, the reductions and the projection included.
    convs = [b for b in m.modules() if isinstance(b, nn.Conv2d)]
    relus = [b for b in m.modules() if isinstance(b, nn.ReLU)]
    assert len(convs) == len(relus) == 6


def test_naive_inception_passes_pool_branch_through():
    m = NaiveInception(192, 64, 128, 32)
    out = m(torch.randn(1, 192, 28, 28))
    assert out.shape == (1, 64 + 128 + 32 + 192, 28, 28) and m.out_channels == 416


def test_paper_stem_has_lrn_and_no_batchnorm(paper):
    lrn = [m for m in paper.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert [(m.size, m.alpha, m.beta, m.k) for m in lrn] == [(5, 1e-4, 0.75, 1.0)] * 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    pools = [m for n, m in paper.named_children() if n.startswith("pool")]
    assert all(p.kernel_size == 3 and p.stride == 2 and p.ceil_mode for p in pools)
    assert paper.dropout.p == 0.4 and paper.aux1.dropout.p == 0.7


def test_caffe_initialisation(paper):
    conv = paper.inception_3a.branch3x3.conv.conv
    bound = math.sqrt(3 / conv.weight[0].numel())
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.all(conv.bias == 0.2) and torch.all(paper.aux1.fc.bias == 0.2)
    assert torch.all(paper.linear.bias == 0) and torch.all(paper.aux2.linear.bias == 0)


def test_output_type_never_depends_on_mode(paper):
    x = torch.randn(2, 3, 64, 64)
    for train in (True, False):
        paper.train(train)
        logits = paper(x)
        assert isinstance(logits, torch.Tensor) and logits.shape == (2, 1000)
        out = paper(x, return_aux=True)
        assert isinstance(out, GoogLeNetOutputs)
        assert [t.shape for t in out] == [(2, 1000)] * 3
    paper.eval()
    with torch.no_grad():
        out = paper(x, return_aux=True)
        torch.testing.assert_close(out.logits, paper(x))  # eval is deterministic, aux or not


def test_aux_heads_read_4a_and_4d():
    model = build_model("googlenet").eval()
    x = torch.randn(1, 3, 224, 224)
    seen = {}
    model.inception_4a.register_forward_hook(lambda m, i, o: seen.__setitem__("4a", o))
    model.inception_4d.register_forward_hook(lambda m, i, o: seen.__setitem__("4d", o))
    with torch.no_grad():
        out = model(x, return_aux=True)
        torch.testing.assert_close(out.aux1, model.aux1(seen["4a"]))
        torch.testing.assert_close(out.aux2, model.aux2(seen["4d"]))
        # At 14x14 the paper's 5x5/3 pool gives the 4x4 grid.
        pooled = nn.functional.avg_pool2d(seen["4a"], 5, 3)
        torch.testing.assert_close(
            model.aux1.linear(torch.relu(model.aux1.fc(model.aux1.conv(pooled).flatten(1)))), out.aux1
        )


def test_return_aux_without_heads_is_a_clear_error():
    with pytest.raises(ValueError, match="aux=False"):
        build_model("googlenet", aux=False)(torch.zeros(1, 3, 32, 32), return_aux=True)


def test_forward_features_head_and_reset_classifier(paper):
    paper.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        features = paper.forward_features(x)
        assert features.shape == (2, 1024, 3, 3)
        torch.testing.assert_close(paper.forward_head(features), paper(x))
        assert paper.forward_head(features, pre_logits=True).shape == (2, 1024)
    model = build_model("googlenet", num_classes=1000)
    model.reset_classifier(10)
    out = model(x, return_aux=True)
    assert [t.shape for t in out] == [(2, 10)] * 3 and model.num_classes == 10


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [32, 224])
def test_each_variant_forward_and_backward(name, size):
    model = build_model(name, num_classes=7).train()
    out = model(torch.randn(2, 3, size, size), return_aux=True)
    loss = sum(nn.functional.cross_entropy(t, torch.tensor([1, 5])) for t in out)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert model.conv1.conv.weight.grad.abs().sum() > 0


def test_width_multiplier_scales_every_layer():
    half = build_model("googlenet", width=0.5)
    assert half.inception_3a.branch1x1.conv.out_channels == 32 and half.inception_5b.out_channels == 512
    assert half.aux1.fc.out_features == 512
    assert half(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    ratio = sum(p.numel() for p in half.parameters()) / sum(p.numel() for p in build_model("googlenet").parameters())
    assert 0.2 < ratio < 0.35  # conv weights scale with width^2, the classifiers with width


def test_tv_layout_differences():
    tv = build_model("googlenet_tv")
    assert tv.inception_3a.branch5x5.conv.conv.kernel_size == (3, 3)
    assert tv.pool4.kernel_size == 2 and tv.conv1.bn.eps == 1e-3 and tv.dropout.p == 0.2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in tv.modules())


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet50")
    with pytest.raises(ValueError, match="norm"):
        GoogLeNet(norm="group")
    with pytest.raises(ValueError, match="width"):
        GoogLeNet(width=0)


@pytest.mark.parametrize(
    "side, pooled", [(12, "caffe"), (13, "caffe"), (14, "caffe"), (15, "adaptive"), (11, "adaptive")]
)
def test_the_aux_pool_rounds_as_caffe(side, pooled):
    """Caffe rounds pooled sizes up: its 5x5/3 pool gives 4x4 on maps of 12-14 (5x5 on 15-16, which its FC
    layer could not take: there, as on any other size, the head pools adaptively to 4x4)."""
    head = build_model("googlenet", width=0.25).aux1.eval()
    x = torch.randn(2, head.conv.conv.in_channels, side, side)
    if pooled == "caffe":
        grid = nn.functional.avg_pool2d(x, 5, 3, ceil_mode=True)
    else:
        grid = nn.functional.adaptive_avg_pool2d(x, 4)
    assert grid.shape[-2:] == (4, 4)
    with torch.no_grad():
        expected = head.linear(torch.relu(head.fc(head.conv(grid).flatten(1))))
        torch.testing.assert_close(head(x), expected)
