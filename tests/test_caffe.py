"""BVLC's Caffe GoogLeNet weights: the tests write their own .caffemodel (a small protobuf encoder below, from a
random paper-variant model with BVLC's layer names and shapes, conv1 in BGR order), in the current `layer`
layout with packed floats and in the V1 `layers` layout with unpacked floats, and import them."""

import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

import googlenet
from googlenet.cli import main
from googlenet.model.caffe import AUX_LAYERS, LAYERS, read_layers
from googlenet.model.formats.onnx import OnnxClassifier

WIDTH = 0.25  # a narrow net keeps the files small; BVLC's is width 1 (conv1's 64 filters say which)


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, wire, payload):
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _blob(array, v1):
    array = np.asarray(array, np.float32)
    if not v1:  # BlobShape (dims packed) and packed floats
        dims = b"".join(_varint(d) for d in array.shape)
        return _field(7, 2, _field(1, 2, dims)) + _field(5, 2, array.tobytes())
    dims = (1,) * (4 - array.ndim) + array.shape  # the old num / channels / height / width, floats one by one
    head = b"".join(_field(k + 1, 0, _varint(d)) for k, d in enumerate(dims))
    return head + b"".join(_field(5, 5, struct.pack("<f", v)) for v in array.reshape(-1))


def write_caffemodel(model, path, v1=False, layers=None):
    """`model`'s weights as BVLC's net (conv1 in BGR order), in the current or the V1 layout."""
    state = model.state_dict()
    net = _field(1, 2, b"GoogleNet")
    for theirs, ours in (layers or {**LAYERS, **AUX_LAYERS}).items():
        weight, bias = state[f"{ours}.weight"], state[f"{ours}.bias"]
        if theirs == "conv1/7x7_s2":
            weight = weight.flip(1)  # RGB -> Caffe's BGR
        kind = "Convolution" if weight.ndim == 4 else "InnerProduct"
        if v1:
            layer = _field(4, 2, theirs.encode()) + _field(5, 0, _varint(4 if kind == "Convolution" else 14))
            layer += b"".join(_field(6, 2, b) for b in (_blob(weight.numpy(), v1), _blob(bias.numpy(), v1)))
        else:
            layer = _field(1, 2, theirs.encode()) + _field(2, 2, kind.encode())
            layer += b"".join(_field(7, 2, b) for b in (_blob(weight.numpy(), v1), _blob(bias.numpy(), v1)))
        net += _field(2 if v1 else 100, 2, layer)
    path.write_bytes(net)
    return path


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return googlenet.build_model("googlenet", width=WIDTH).eval()


@pytest.mark.parametrize("v1", [False, True], ids=["layer", "V1 layers, unpacked floats"])
def test_imported_logits_equal_the_source_models(source, tmp_path, v1):
    path = write_caffemodel(source, tmp_path / "net.caffemodel", v1)
    model = googlenet.load_model(path)
    assert model.meta.variant == "googlenet" and model.aux1 is not None and not model.training
    assert model.meta.class_names[:2] == ["tench", "goldfish"] and len(model.meta.class_names) == 1000
    assert model.meta.std == (1 / 255,) * 3 and model.meta.mean == (123 / 255, 117 / 255, 104 / 255)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (240, 260, 3), dtype=np.uint8))
    x = googlenet.transforms_for(model.meta)(image)[None]
    ours, theirs = model(x), source(x)
    assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    for k in (1, 2):
        assert torch.equal(model.get_submodule(f"aux{k}").fc.weight, source.get_submodule(f"aux{k}").fc.weight)


def test_bgr_order_in_the_file(source, tmp_path):
    """Caffe's conv1 reads B, G, R: the file holds the RGB model's filters with their input channels reversed."""
    layers = read_layers(write_caffemodel(source, tmp_path / "net.caffemodel"))
    assert np.array_equal(layers["conv1/7x7_s2"][0][:, 0], source.conv1.conv.weight[:, 2].detach().numpy())


def test_bad_files_are_one_line(source, tmp_path):
    good = write_caffemodel(source, tmp_path / "good.caffemodel").read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.caffemodel").write_bytes(np.random.default_rng(0).bytes(5000))
    other = {"conv1": "conv1.conv", "fc8": "linear"}  # another network's layer names
    write_caffemodel(source, tmp_path / "alexnet.caffemodel", layers=other)
    for name, message in [("cut", "truncated"), ("noise", "not a Caffe model"), ("alexnet", "no layer conv1/7x7_s2")]:
        with pytest.raises(ValueError, match=message) as err:
            googlenet.load_model(tmp_path / f"{name}.caffemodel")
        assert "\n" not in str(err.value)


def test_predict_export_and_fine_tuning_from_the_file(source, tmp_path, capsys, fmnist):
    path = str(write_caffemodel(source, tmp_path / "net.caffemodel"))
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(image)
    assert main(["predict", "--checkpoint", path, str(image), "--json", "--top-k", "2"]) == 0
    first = json.loads(capsys.readouterr().out)[0]["predictions"][0]
    assert first["class"] == googlenet.load_model(path).meta.class_names[first["index"]]
    args = ["export", "--checkpoint", path, "--out", str(tmp_path / "m.onnx"), "--root", str(fmnist)]
    assert main([*args, "--check-images", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["relative_diff"] <= 1e-4
    assert googlenet.load_model(path).meta.class_names == OnnxClassifier(tmp_path / "m.onnx").meta.class_names
    out = tmp_path / "tuned"
    args = ["train", "--config", "smoke", "--model.name", "googlenet", "--model.weights", path, "--model.width",
            str(WIDTH), "--data.root", str(fmnist), "--out", str(out), "--run.max_steps", "2"]  # fmt: skip
    assert main(args) == 0
    assert googlenet.load_model(out / "model.safetensors").meta.num_classes == 10


def test_weights_import_checks_the_sha1_of_a_file_named_as_bvlcs(source, tmp_path, capsys):
    path = write_caffemodel(source, tmp_path / "net.caffemodel")
    assert main(["weights", "import", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bvlc"] is False and report["aux"] is True and report["classes"] == 1000
    assert googlenet.load_model(report["path"]).meta.class_names[0] == "tench"
    path.rename(tmp_path / "bvlc_googlenet.caffemodel")
    assert main(["weights", "import", str(tmp_path / "bvlc_googlenet.caffemodel")]) == 2
    err = capsys.readouterr().err
    assert "405fc5acd08a3bb12de8ee5e23a96bec22f08204" in err and len(err.strip().splitlines()) == 1


def test_published_weights_by_name_from_torch_hubs_cache(tmp_path, monkeypatch, capsys):
    """`--checkpoint torchvision` and `bvlc`: found in torch.hub's cache (nothing can be downloaded here), or one
    line saying where to put the file. A file placed there is checked like a download: the wrong hash is refused;
    and a changed source is converted again, not the stale conversion used."""
    import dataclasses
    import hashlib

    import torchvision

    from googlenet.model import hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(image)

    def predict(name):
        code = main(["predict", "--checkpoint", name, str(image), "--json"])
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = predict("bvlc")
    assert code == 2 and "put bvlc_googlenet.caffemodel" in err and len(err.strip().splitlines()) == 1
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)  # the bvlc attempt made it
    placed = cache / "googlenet-1378be20.pth"

    def place(seed):
        torch.manual_seed(seed)
        theirs = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).eval()
        torch.save(theirs.state_dict(), placed)  # as torchvision's own download leaves it
        return theirs, hashlib.sha256(placed.read_bytes()).hexdigest()

    theirs, digest = place(0)
    code, _, err = predict("torchvision")  # a random state_dict cannot have the published hash
    assert code == 2 and f"sha256 {digest}, not the published 1378be20" in err, err
    assert not (cache / "googlenet_tv-imagenet1k_v1.safetensors").exists()
    entry = hub.PUBLISHED["torchvision"]
    monkeypatch.setitem(hub.PUBLISHED, "torchvision", dataclasses.replace(entry, digest=digest[:8]))
    code, out, err = predict("torchvision")  # the placed file, as if it were torchvision's
    assert code == 0, err
    first = json.loads(out)[0]["predictions"][0]
    names = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]
    assert first["class"] == names[first["index"]]
    converted = cache / "googlenet_tv-imagenet1k_v1.safetensors"
    model = googlenet.load_model(converted)
    assert model.meta.source == {"file": placed.name, "sha256": digest}
    x = torch.randn(1, 3, 224, 224)
    assert (model(x) - theirs(x)).abs().max() <= 1e-4 * theirs(x).abs().max()
    theirs, digest = place(1)  # the source changes: its conversion is made again
    monkeypatch.setitem(hub.PUBLISHED, "torchvision", dataclasses.replace(entry, digest=digest[:8]))
    model = googlenet.load_model("torchvision")
    assert model.meta.source == {"file": placed.name, "sha256": digest}
    assert (model(x) - theirs(x)).abs().max() <= 1e-4 * theirs(x).abs().max()


def test_evaluate_on_wnid_folders_and_detect_train_from_the_file(source, tmp_path, capsys, fmnist):
    """ImageNet's val/ layout (one wnid folder per class, sorted as Caffe's synsets) evaluates imported weights;
    the region classifier fine-tunes from the .caffemodel."""
    from test_detector import _scenes

    path = str(write_caffemodel(source, tmp_path / "net.caffemodel"))
    val = tmp_path / "val"
    rng = np.random.default_rng(4)
    for k in range(1000):
        (val / f"n{k:08d}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(val / f"n{k:08d}" / "a.png")
    assert main(["evaluate", "--checkpoint", path, "--data", str(val), "--limit", "6", "--workers", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 6
    root = _scenes(fmnist, tmp_path)
    args = ["detect", "train", "--config", "detect_scenes", "--data.root", str(root), "--model.name", "googlenet",
            "--model.weights", path, "--model.width", str(WIDTH), "--model.input_size", "64", "--data.batch_size",
            "8", "--data.workers", "0", "--run.max_steps", "1", "--detect.val_windows", "8",
            "--out", str(tmp_path / "regions")]  # fmt: skip
    assert main(args) == 0
    regions = googlenet.load_model(tmp_path / "regions" / "model.safetensors", task="regions")
    assert regions.meta.mean == googlenet.load_model(path).meta.mean  # the Caffe input scale carried over


def test_caffes_test_protocol_warps_to_256_then_crops_224(source, tmp_path):
    """BVLC evaluated on images warped to 256x256 (aspect not kept), then the centre 224: the imported record says
    so (resize "warp"), and the one-crop preprocessing of predict, evaluate and transforms_for does it."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    model = googlenet.load_model(write_caffemodel(source, tmp_path / "net.caffemodel"))
    assert model.meta.resize == "warp" and model.meta.crop_pct == 224 / 256
    image = Image.fromarray(np.random.default_rng(5).integers(0, 256, (300, 500, 3), dtype=np.uint8))
    warped = F.resize(F.to_image(image), [256, 256], InterpolationMode.BILINEAR, antialias=True)
    expected = F.normalize(F.to_dtype(F.center_crop(warped, [224, 224]), torch.float32, scale=True),
                           list(model.meta.mean), list(model.meta.std))  # fmt: skip
    assert torch.equal(googlenet.transforms_for(model.meta)(image), expected)


def test_imagenet_names_and_wnids_are_in_ilsvrcs_order():
    """torchvision's 1,000 names (what the import records) follow ILSVRC-2012's sorted wnids, whose list the
    package ships: checked against timm's copy of the synsets and their lemmas (all but two names, which
    torchvision renamed to keep them unique, are their synset's first lemma)."""
    timm_info = pytest.importorskip("timm.data").ImageNetInfo()
    from googlenet.model.caffe import imagenet_classes, imagenet_wnids

    wnids = imagenet_wnids()
    assert wnids == timm_info.label_names() == sorted(wnids) and len(set(wnids)) == 1000
    lemmas = [timm_info.index_to_description(i).split(", ") for i in range(1000)]
    differ = [
        (i, name) for i, (name, lemma) in enumerate(zip(imagenet_classes(), lemmas, strict=True)) if name not in lemma
    ]
    assert differ == [(134, "crane bird"), (639, "maillot tank suit")]  # "crane" and "maillot" twice in ILSVRC


def test_some_wnid_folders_evaluate_as_their_classes(source, tmp_path, capsys):
    path = str(write_caffemodel(source, tmp_path / "net.caffemodel"))
    model = googlenet.load_model(path)
    val = tmp_path / "val"
    picked = [model.meta.class_ids[k] for k in (7, 300, 999)]
    for wnid in picked:
        (val / wnid).mkdir(parents=True)
        Image.fromarray(np.random.default_rng(6).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(
            val / wnid / "a.png"
        )
    from googlenet.data.loaders import dataset_for

    data = dataset_for(str(val), classes=model.meta.class_names, ids=model.meta.class_ids)
    assert [data[i][1] for i in range(3)] == [7, 300, 999] and data.classes == model.meta.class_names
    assert main(["evaluate", "--checkpoint", path, "--data", str(val), "--workers", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 3


def places365_in_hub_cache(tmp_path, monkeypatch, names):
    """CSAIL's three downloads, made here (a narrow network with random weights, `names` as its categories, a
    BGR mean image of 100, 110, 120), placed in torch.hub's cache as the hub leaves them. Returns the network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(1)
    places = googlenet.build_model("googlenet", num_classes=365, width=WIDTH).eval()
    write_caffemodel(places, cache / "googlenet_places365.caffemodel")
    letters = [f"/{name[0]}/{name} {k}" for k, name in enumerate(names)]
    (cache / "categories_places365.txt").write_text("\n".join(letters) + "\n")
    mean_image = np.stack([np.full((4, 4), v, np.float32) for v in (100, 110, 120)])[None]  # BGR, as Caffe's
    (cache / "places365CNN_mean.binaryproto").write_bytes(_blob(mean_image, v1=False))
    return places


def test_places365_by_name_from_torch_hubs_cache(tmp_path, monkeypatch, capsys):
    """CSAIL's GoogLeNet-Places365, the third published entry: the .caffemodel with its category names and mean
    image beside it (as their downloads leave them) becomes our weights with 365 named classes and that mean."""
    names = [f"scene_{k}/outdoor" if k % 2 else f"scene_{k}" for k in range(365)]
    places = places365_in_hub_cache(tmp_path, monkeypatch, names)
    model = googlenet.load_model("places365")
    assert model.meta.class_names == names and model.meta.num_classes == 365
    assert model.meta.mean == pytest.approx((120 / 255, 110 / 255, 100 / 255))
    assert model.meta.source["file"] == "googlenet_places365.caffemodel" and len(model.meta.source["sha256"]) == 64
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():  # the same weights (conv1's channels flipped to BGR in the file and back): the same logits
        assert torch.equal(model(x), places(x))
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(image)
    assert main(["predict", "--checkpoint", "places365", str(image), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)[0]["predictions"][0]
    assert first["class"] == names[first["index"]]
