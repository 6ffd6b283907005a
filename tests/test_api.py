"""The Python API as timm and torchvision users reach for it: models loaded ready for inference, the preprocessing
from the metadata record, classify(), feature models, classifiers reset and saved, named weights refused."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import googlenet
from googlenet import build_model, load_model, save_weights
from googlenet.data.fashion_mnist import CLASSES
from googlenet.evaluate import predict

from conftest import trained_like


def _image(seed=0, size=(50, 40)):
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _saved(tmp_path):
    model = trained_like("googlenet_bn")
    model.meta = dataclasses.replace(model.meta, class_names=list(CLASSES), input_size=32, crop_pct=0.875)
    return save_weights(model, tmp_path / "m.safetensors"), model


def test_a_loaded_model_is_ready_for_one_image(tmp_path):
    """load_model gives eval mode: one image passes BatchNorm, and gives the trained model's eval outputs."""
    path, model = _saved(tmp_path)
    loaded = load_model(path)
    x = googlenet.transforms_for(loaded.meta)(_image())[None]
    assert not loaded.training
    assert torch.equal(loaded(x), model.eval()(x))


def test_transforms_for_is_what_classify_and_predict_use(tmp_path):
    path, _ = _saved(tmp_path)
    model = load_model(path)
    image = _image(1)
    probs = model(googlenet.transforms_for(model.meta)(image)[None]).softmax(1)[0]
    top = probs.topk(3)
    got = googlenet.classify(model, [image], topk=3)[0]["predictions"]
    assert [p["index"] for p in got] == top.indices.tolist()
    assert [p["probability"] for p in got] == top.values.tolist()  # the same computation, so the same floats
    assert got[0]["class"] == CLASSES[int(top.indices[0])]
    image.save(tmp_path / "a.png")
    predicted = predict([str(path)], [str(tmp_path / "a.png")], topk=3, device="cpu", optimize=False)
    assert predicted[0]["predictions"] == got  # `googlenet predict` on the saved file: the same floats


def test_reset_classifier_then_save_and_load_round_trips(tmp_path):
    model = build_model("googlenet_bn", num_classes=10, width=0.25)
    model.reset_classifier(3, ["cat", "dog", "bird"])
    assert model.meta.num_classes == 3 and model.meta.class_names == ["cat", "dog", "bird"]
    loaded = load_model(save_weights(model, tmp_path / "r.safetensors"))
    x = torch.randn(2, 3, 64, 64)
    assert loaded.meta.class_names == ["cat", "dog", "bird"] and torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        model.reset_classifier(3, ["a", "b"])


def test_num_classes_0_is_the_pooled_feature_model(tmp_path):
    features = build_model("googlenet", num_classes=0, width=0.25).eval()
    x = torch.randn(2, 3, 64, 64)
    assert features.aux1 is None and features(x).shape == (2, features.num_features)
    assert torch.equal(features(x), features.forward_head(features.forward_features(x), pre_logits=True))
    loaded = load_model(save_weights(features, tmp_path / "f.safetensors"))
    assert torch.equal(loaded(x), features(x))
    classifier = build_model("googlenet", num_classes=5, width=0.25)
    classifier.reset_classifier(0)
    assert classifier.aux1 is None and classifier.eval()(x).shape == (2, classifier.num_features)


@pytest.mark.parametrize(
    "name, kwargs, says",
    [
        ("googlenet_bn", {"pretrained": True}, "no published weights for googlenet_bn .googlenet: bvlc"),
        ("googlenet", {"pretrained": True, "weights": "bvlc"}, "not both"),
        ("googlenet", {"weights": object()}, "a path or a published name"),
    ],
)
def test_pretrained_means_the_variants_published_weights_and_other_forms_are_one_line_errors(name, kwargs, says):
    from googlenet.model.variants import PRETRAINED

    assert PRETRAINED == {"googlenet": "bvlc", "googlenet_tv": "torchvision"}
    with pytest.raises(ValueError, match=says):
        build_model(name, **kwargs)


def test_timm_creates_our_models_where_it_is_installed():
    timm = pytest.importorskip("timm")

    model = timm.create_model("googlenet_paper", num_classes=5)
    assert isinstance(model, googlenet.GoogLeNet) and model.meta.variant == "googlenet" and model.num_classes == 5
    config = timm.data.resolve_data_config(model=model)
    assert config["input_size"] == (3, 224, 224) and config["mean"] == tuple(model.meta.mean)
    assert timm.create_model("googlenet_bn", num_classes=0)(torch.randn(2, 3, 64, 64)).shape == (2, 1024)
    with pytest.raises(ValueError, match="no published weights for googlenet_bn"):
        timm.create_model("googlenet_bn", pretrained=True)
