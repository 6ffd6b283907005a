"""Our models in timm: registered whatever the import order, and passing the checks that timm's own
tests/test_models.py makes of every timm model (forward, backward, default cfgs, TorchScript, features_only,
forward_intermediates, torch.fx, grad checkpointing, pretrained tags), written after timm's tests at the sizes
they use."""

import math
import os
import subprocess
import sys

import pytest
import torch

timm = pytest.importorskip("timm")
from timm import create_model, get_pretrained_cfg_value, list_pretrained, set_scriptable  # noqa: E402
from timm.models import get_notrace_functions, get_notrace_modules  # noqa: E402
from torchvision.models.feature_extraction import (  # noqa: E402
    NodePathTracer,
    create_feature_extractor,
    get_graph_node_names,
)

import googlenet  # noqa: E402, F401 (registers with timm, imported before or after it)

NAMES = ["googlenet_paper", "googlenet_bn", "googlenet_tv"]
TIMM_FIRST = "GOOGLENET_TEST_TIMM_FIRST"  # set in the run of this file that imports timm before googlenet


def _input_size(model=None, name="", target=None):
    """timm's _get_input_size: the cfg's size, or its minimum where the size is over `target`."""
    cfg = model.default_cfg if model is not None else None
    size = cfg["input_size"] if cfg else get_pretrained_cfg_value(name, "input_size")
    smallest = cfg.get("min_input_size") if cfg else get_pretrained_cfg_value(name, "min_input_size")
    if target and max(size) > target:
        return smallest or tuple(min(x, target) for x in size)
    return size


@pytest.mark.parametrize("first", ["timm", "googlenet"])
def test_registered_whatever_the_import_order(first):
    """In a fresh interpreter, timm imported before or after googlenet; googlenet alone imports neither."""
    if os.environ.get(TIMM_FIRST):
        pytest.skip("ran in the run that started this one")
    second = "googlenet" if first == "timm" else "timm"
    code = (
        f"import {first}, {second}, sys\n"
        "print(sorted(timm.list_models('googlenet*')), 'torch' in sys.modules)\n"
        "print(timm.create_model('googlenet_paper', num_classes=3)(__import__('torch').randn(1, 3, 64, 64)).shape)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "['googlenet_bn', 'googlenet_paper', 'googlenet_tv'] True",
        "torch.Size([1, 3])",
    ]
    alone = "import googlenet, sys; print('timm' in sys.modules, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", alone], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False False", done.stdout + done.stderr


def test_every_check_passes_with_timm_imported_first_too():
    """This file runs with googlenet imported first (conftest.py imports it, then timm's import registers the
    models); here every other test of it runs again in a fresh interpreter that imports timm before googlenet."""
    if os.environ.get(TIMM_FIRST):
        pytest.skip("this is that run")
    code = (
        "import sys, timm\n"
        "assert 'googlenet' not in sys.modules\n"
        "import pytest\n"
        f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', {__file__!r}]))"
    )
    env = {**os.environ, TIMM_FIRST: "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0 and " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-3000:]


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_grad_checkpointing(name):
    model = create_model(name, pretrained=False).eval()
    inputs = torch.randn(1, *_input_size(model, target=384))
    with torch.no_grad():
        outputs = model(inputs)
        assert outputs.shape == (1, 1000) and not torch.isnan(outputs).any()
        model.set_grad_checkpointing()
        assert torch.allclose(outputs, model(inputs), rtol=1e-4, atol=1e-5)
    model.set_grad_checkpointing()  # recomputed in the backward pass: the same gradients as without
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    checkpointed = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(False)
    model(x).sum().backward()
    assert all(
        torch.allclose(a, p.grad, rtol=1e-4, atol=1e-6) for a, p in zip(checkpointed, model.parameters(), strict=True)
    )


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter_and_aux_heads_come_when_asked(name):
    model = create_model(name, pretrained=False, num_classes=42).train()
    assert model.aux1 is None and model.aux2 is None  # timm's builds: no auxiliary heads unless asked
    outputs = model(torch.randn(2, *_input_size(name=name, target=128)))
    outputs.mean().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {n}"
    assert outputs.shape[-1] == 42 and not torch.isnan(outputs).any()
    with_heads = create_model(name, pretrained=False, num_classes=42, aux=True).train()
    out = with_heads(torch.randn(2, 3, 96, 96), return_aux=True)
    (out.logits.mean() + out.aux1.mean() + out.aux2.mean()).backward()
    assert all(p.grad is not None for p in with_heads.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_default_cfgs(name):
    model = create_model(name, pretrained=False).eval()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    state = model.state_dict()
    cfg = model.default_cfg
    pool_size, inputs = cfg["pool_size"], torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        features = model.forward_features(inputs)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert features.shape[-2:] == pool_size and features.shape[1] == model.num_features
        assert pre_logits.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        pooled = model(inputs)
        assert pooled.shape == pre_logits.shape == (1, model.head_hidden_size)
        model.reset_classifier(0, "")
        assert model(inputs).shape[-2:] == pool_size and model(inputs).dim() == 4
        bare = create_model(name, pretrained=False, num_classes=0, global_pool="").eval()
        assert bare(inputs).dim() == 4 and bare(inputs).shape[-2:] == pool_size
    classifiers = cfg["classifier"] if isinstance(cfg["classifier"], tuple | list) else (cfg["classifier"],)
    assert all(c + ".weight" in state for c in classifiers)
    first = cfg["first_conv"] if isinstance(cfg["first_conv"], tuple | list) else (cfg["first_conv"],)
    assert all(c + ".weight" in state for c in first)
    config = timm.data.resolve_data_config(model=model)
    assert config["input_size"] == (3, 224, 224) and config["mean"] == model.meta.mean


@pytest.mark.parametrize("name", NAMES)
def test_torchscript(name):
    with set_scriptable(True):
        model = create_model(name, pretrained=False)
    model.eval()
    scripted = torch.jit.script(model)
    inputs = torch.randn(1, *_input_size(name=name, target=128))
    with torch.no_grad():
        outputs = scripted(inputs)
        assert outputs.shape[0] == 1 and not torch.isnan(outputs).any()
        assert torch.allclose(outputs, model(inputs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("feature_cls", [None, "getter"])
def test_features_only(name, feature_cls):
    options = {"feature_cls": feature_cls} if feature_cls else {}
    model = create_model(name, pretrained=False, features_only=True, **options).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert channels == [64, 192, 480, 832, 1024] and reductions == [2, 4, 8, 16, 32]
    size = _input_size(model, target=96)
    with torch.no_grad():
        outputs = model(torch.randn(1, *size))
    assert len(outputs) == len(channels)
    for c, r, o in zip(channels, reductions, outputs, strict=True):
        assert o.shape[1] == c and o.shape[0] == 1 and not torch.isnan(o).any()
        assert o.shape[2] <= math.ceil(size[1] / r) + 1 and o.shape[3] <= math.ceil(size[2] / r) + 1
    some = create_model(name, pretrained=False, features_only=True, out_indices=(2, 4)).eval()
    assert some.feature_info.channels() == [480, 1024] and len(some(torch.randn(1, 3, 64, 64))) == 2


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates(name):
    model = create_model(name, pretrained=False).eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    size = _input_size(model, target=96)
    inputs = torch.randn(1, *size)
    with torch.no_grad():
        output, intermediates = model.forward_intermediates(inputs, output_fmt="NCHW")
        assert [o.shape[1] for o in intermediates] == info.channels()
        for r, o in zip(info.reduction(), intermediates, strict=True):
            assert o.shape[2] <= math.ceil(size[1] / r) + 1
        assert torch.allclose(output, model.forward_features(inputs))
        last_two = model.forward_intermediates(inputs, indices=2, intermediates_only=True)
        assert [o.shape[1] for o in last_two] == info.channels()[-2:]
        early = model.forward_intermediates(inputs, indices=[1], stop_early=True)
        assert early[0].shape[1] == 192 and early[1][0].shape[1] == 192
        model.set_grad_checkpointing()
        assert torch.allclose(output, model.forward_intermediates(inputs)[0], rtol=1e-4, atol=1e-5)
    kept = model.prune_intermediate_layers(indices=[2])
    assert kept == [2] and model.num_classes == 0
    with torch.no_grad():
        assert model.forward_intermediates(inputs, indices=[2])[0].shape[1] == 480


def _fx_model(model, train=False):
    """timm's _create_fx_model: the graph's last node (in train mode the nodes its output reads)."""
    tracer_kwargs = dict(
        leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(), param_shapes_constant=True
    )
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    eval_return, train_return = [eval_nodes[-1]], [train_nodes[-1]]
    if train:
        graph_nodes = list(reversed(NodePathTracer(**tracer_kwargs).trace(model).nodes))
        names = [n.name for n in graph_nodes]
        train_return = [train_nodes[-names.index(n.name)] for n in graph_nodes[0]._input_nodes]
    return create_feature_extractor(
        model, train_return_nodes=train_return, eval_return_nodes=eval_return, tracer_kwargs=tracer_kwargs
    )


@pytest.mark.parametrize("name", NAMES)
def test_fx_feature_extraction(name):
    model = create_model(name, pretrained=False).eval()
    inputs = torch.randn(1, *_input_size(model, target=128))
    with torch.inference_mode():
        outputs = model(inputs)
        traced = tuple(_fx_model(model)(inputs).values())
    assert torch.all(torch.cat(traced) == outputs)
    model = create_model(name, pretrained=False, num_classes=42).train()
    traced_model = _fx_model(model, train=True)
    outputs = torch.cat(tuple(traced_model(torch.randn(2, *_input_size(name=name, target=128))).values()))
    outputs.mean().backward()
    assert all(p.grad is not None for p in traced_model.parameters()) and outputs.shape[-1] == 42


def test_pretrained_tags_load_the_published_weights_through_the_hub(tmp_path, monkeypatch):
    """Tags name the published weights; pretrained=True loads them as googlenet.model.hub does (here CSAIL's
    Places365 GoogLeNet placed in torch.hub's cache, as test_caffe.py makes it), with a new classifier where
    num_classes differs, and features_only too."""
    from test_caffe import places365_in_hub_cache

    assert {"googlenet_paper.bvlc_in1k", "googlenet_paper.places365", "googlenet_tv.tv_in1k"} <= set(
        list_pretrained("googlenet*")
    )
    assert get_pretrained_cfg_value("googlenet_paper.places365", "num_classes") == 365
    assert get_pretrained_cfg_value("googlenet_bn", "input_size") == (3, 224, 224)
    places = places365_in_hub_cache(tmp_path, monkeypatch, [f"scene_{k}" for k in range(365)])
    model = create_model("googlenet_paper.places365", pretrained=True).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), places(x))
    assert model.default_cfg["mean"] == pytest.approx((120 / 255, 110 / 255, 100 / 255))
    tuned = create_model("googlenet_paper.places365", pretrained=True, num_classes=5)
    assert tuned.num_classes == 5 and torch.equal(tuned.conv1.conv.weight, places.conv1.conv.weight)
    features = create_model("googlenet_paper.places365", pretrained=True, features_only=True)
    assert len(features(x)) == 5
    with pytest.raises(ValueError, match="no published weights for googlenet_bn"):
        create_model("googlenet_bn", pretrained=True)
