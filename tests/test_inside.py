"""Looking inside the network (googlenet.inside): activations by our module names, BVLC's blob names and Lucid's
mixed3a ... mixed5b, each equal to the module's own output computed by hand."""

import pytest
import torch

from googlenet import build_model
from googlenet.inside import (
    activations,
    class_activation_maps,
    grad_cam,
    layer_names,
    peak_box,
    resolve_layer,
    upsampled,
)


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    return build_model("googlenet", num_classes=10, width=0.25).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def by_hand(model, x):
    """The outputs the names below stand for, the forward pass written out module by module."""
    out = {}
    x = out["conv1"] = model.conv1(model._transformed(x))
    x = model.norm1(model.pool1(x))
    x = out["conv2.conv"] = model.conv2.conv(model.conv2.reduce(x))
    x = out["norm2"] = model.norm2(x)
    x = model.inception_3b(model.inception_3a(model.pool2(x)))
    x = model.inception_4b(model.inception_4a(model.pool3(x)))
    out["inception_4c.branch5x5"] = out["inception_4c.branch5x5.conv"] = model.inception_4c.branch5x5(x)
    out["inception_4c.branch5x5.conv.conv"] = model.inception_4c.branch5x5.conv.conv(
        model.inception_4c.branch5x5.reduce(x)
    )
    x = out["inception_4c"] = model.inception_4c(x)
    x = model.inception_4e(model.inception_4d(x))
    x = out["inception_5b"] = model.inception_5b(model.inception_5a(model.pool4(x)))
    out["avgpool"] = model.avgpool(x)
    return out


NAMES = [  # (a name, the module it is)
    ("conv1", "conv1"),
    ("conv1/7x7_s2", "conv1"),
    ("conv2d0", "conv1"),
    ("conv2/3x3", "conv2.conv"),
    ("conv2d2", "conv2.conv"),
    ("conv2/norm2", "norm2"),
    ("norm2", "norm2"),
    ("inception_4c", "inception_4c"),
    ("inception_4c/output", "inception_4c"),
    ("mixed4c", "inception_4c"),
    ("inception_4c.branch5x5", "inception_4c.branch5x5"),
    ("inception_4c/5x5", "inception_4c.branch5x5.conv"),  # the 5x5 ConvBlock: the branch's output
    ("inception_4c.branch5x5.conv.conv", "inception_4c.branch5x5.conv.conv"),
    ("mixed5b", "inception_5b"),
    ("pool5/7x7_s1", "avgpool"),
]


def test_activations_by_each_naming_equal_the_modules_output(paper, images):
    with torch.no_grad():
        expected = by_hand(paper, images)
        expected["linear"] = paper(images)
        got = activations(paper, images, [name for name, _ in NAMES] + ["loss3/classifier"])
    for name, path in NAMES:
        assert resolve_layer(paper, name) == path
        torch.testing.assert_close(got[name], expected[path], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(got["loss3/classifier"], expected["linear"], rtol=0, atol=0)
    # The bare convolution is taken before its ReLU, which then overwrites its output in place.
    assert got["inception_4c.branch5x5.conv.conv"].min() < 0 <= got["inception_4c/5x5"].min()


def test_auxiliary_heads_layers_and_gradients(paper, images):
    got = activations(paper, images, ["loss1/conv", "loss2/classifier"])  # eval mode: the heads run when asked
    assert got["loss1/conv"].shape[:2] == (2, 32) and got["loss2/classifier"].shape == (2, 10)
    x = images.clone().requires_grad_()
    (got,) = activations(paper, x, "mixed4a").values()
    got.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_an_unknown_layer_is_one_line_naming_the_close_ones(paper, images):
    for wrong, close in (("inception_4x", "inception_4e"), ("mixed4f", "mixed4e"), ("conv2/norm3", "conv2/norm2")):
        with pytest.raises(ValueError, match="no layer named") as error:
            activations(paper, images, ["conv1", wrong])
        assert "\n" not in str(error.value) and close in str(error.value), str(error.value)
    assert {"inception_4c/output", "mixed4c", "inception_4c.branch5x5", "pool5/7x7_s1"} <= set(layer_names(paper))


def test_the_cam_averaged_is_its_classs_logit_and_grad_cam_of_5b_is_the_cam(paper, images):
    """Global average pooling then a linear layer: mean(M_c) + b_c = logit_c, exactly but for rounding (float64
    here: within 1e-12 of the largest logit). Grad-CAM on inception_5b then weighs each map by w_ck / (h w)."""
    model = paper.double()
    try:
        x = images.double()
        result = class_activation_maps(model, x)
        with torch.no_grad():
            logits = model(x)
        assert torch.equal(result.classes, logits.argmax(1)) and result.maps.shape == (2, 2, 2)
        chosen = logits.gather(1, result.classes[:, None])[:, 0]
        averaged = result.maps.mean((1, 2)) + model.linear.bias[result.classes]
        torch.testing.assert_close(averaged, chosen, rtol=0, atol=1e-12 * float(logits.abs().max()))
        other = class_activation_maps(model, x, classes=3)
        torch.testing.assert_close(other.maps.mean((1, 2)) + model.linear.bias[3], logits[:, 3], rtol=0, atol=1e-12)
        cam = grad_cam(model, x, "mixed5b", classes=result.classes)
        torch.testing.assert_close(cam.maps, result.maps.relu() / 4, rtol=1e-12, atol=1e-15)
        assert grad_cam(model, x, "inception_4c/output").maps.shape == (2, 4, 4)
    finally:
        paper.float()


def test_peak_box_is_the_region_around_the_maximum():
    heat = torch.zeros(20, 30)
    heat[4:9, 10:17] = 1.0  # the peak's region
    heat[6, 12] = 2.0
    heat[15:18, 2:5] = 0.9  # a second region, apart
    assert peak_box(heat) == (10, 4, 17, 9)
    assert peak_box(upsampled(heat[None], (40, 60))[0])[0] >= 19  # the region, twice as large


def test_bad_classes_and_layers_are_one_line(paper, images):
    with pytest.raises(ValueError, match="class index out of range: the model has 10 classes"):
        class_activation_maps(paper, images, classes=10)
    with pytest.raises(ValueError, match="did you mean"):
        grad_cam(paper, images, "inception_4cc")
    with pytest.raises(ValueError, match="no spatial map"):
        grad_cam(paper, images, "loss3/classifier")


def test_explain_command_draws_the_cam_and_names_the_class_and_box(tmp_path, capsys):
    import dataclasses
    import json

    import numpy as np
    from PIL import Image

    from googlenet import save_weights
    from googlenet.cli import main
    from googlenet.data.fashion_mnist import CLASSES

    torch.manual_seed(0)
    model = build_model("googlenet", num_classes=10, width=0.25)
    model.meta = dataclasses.replace(model.meta, input_size=64, class_names=list(CLASSES))
    weights = str(save_weights(model, tmp_path / "w.safetensors"))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 70, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "maps"
    assert main(["explain", "--checkpoint", weights, str(tmp_path / "a.png"), "--out", str(out), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["class"] in CLASSES and record["map"] == "inception_5b (CAM)" and 0 < record["probability"] <= 1
    x0, y0, x1, y1 = record["box"]
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert Image.open(record["heatmap"]).size == (64, 64) and record["heatmap"] == str(out / "a.cam.png")
    args = ["explain", "--checkpoint", weights, str(tmp_path / "a.png"), str(tmp_path / "broken.png"), "--json"]
    assert main([*args, "--class", "Trouser", "--layer", "inception_4c/output"]) == 1  # one file unreadable
    captured = capsys.readouterr()
    (record,) = json.loads(captured.out)
    assert record["class"] == "Trouser" and record["map"] == "inception_4c/output (Grad-CAM)"
    assert captured.err.count("\n") == 1 and "broken.png" in captured.err
    for wrong, message in ((["--class", "Trousr"], "did you mean Trouser"), (["--layer", "mixed4x"], "did you mean")):
        assert main([*args[:4], *wrong]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
