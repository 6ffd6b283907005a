"""Issue 42, where the parts join: a run records its task and resumes by itself; a resumed run needs only its
checkpoint; weights carry what fine-tuning needs; every command that reads weights takes a run's folder; what
`detect predict` lists is what it draws; `weights import` converts only Caffe files; and a new proposal method,
export format or dataset layout is a registration in one file (here, this test file) that the CLI then offers."""

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import googlenet
from googlenet import build_model, save_weights
from googlenet.cli import main
from googlenet.data.detection import VOCDetection
from googlenet.model import RegionHead
from googlenet.train import config as train_config
from googlenet.train.loop import train
from test_train import tiny

from conftest import make_fashion_mnist


@pytest.fixture(scope="module")
def fmnist_data(tmp_path_factory):
    return make_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="module")
def scenes(fmnist_data, tmp_path_factory):
    """Six train and two test scenes in VOC layout (googlenet data scenes)."""
    root = tmp_path_factory.mktemp("scenes")
    for split, count in (("train", 6), ("test", 2)):
        args = ["data", "scenes", "--out", str(root), "--split", split, "--count", str(count), "--root"]
        assert main([*args, str(fmnist_data)]) == 0
    return root


def _results(out):
    return json.loads((out / "results.json").read_text())


REGIONS = ["--model.width", "0.125", "--model.input_size", "32", "--data.batch_size", "16", "--data.workers", "0",
           "--detect.val_windows", "40", "--optim.epochs", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def region_run(scenes, tmp_path_factory):
    """A region classifier trained 2 steps by `detect train`, stopped there (run.max_steps)."""
    out = tmp_path_factory.mktemp("regions")
    args = ["detect", "train", "--config", "detect_scenes", "--data.root", str(scenes), "--out", str(out)]
    assert main([*args, *REGIONS, "--run.max_steps", "2"]) == 0
    return out


def test_train_resume_continues_a_region_classifier_run(region_run, capsys):
    config = train_config.read_yaml((region_run / "config.yaml").read_text())
    assert config["task"] == "regions"
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(region_run), "--run.max_steps", "3"]) == 0
    out, err = capsys.readouterr()
    assert "resuming at step 2" in err and "region classifier on" in out
    assert _results(region_run)["step"] == 3
    assert googlenet.load_model(region_run, task="regions").meta.task == "regions"
    # A classification command does not take a region classifier's run for its own.
    assert main(["train", "--task", "classify", "--resume", "--out", str(region_run)]) == 2
    assert "'regions' config, not 'classify'" in capsys.readouterr().err


def test_train_resume_continues_a_multibox_run(scenes, tmp_path, capsys):
    out = tmp_path / "mb"
    args = ["detect", "train-multibox", "--out", str(out), "--data.dataset", "voc", "--data.root", str(scenes)]
    args += ["--data.val_split", "test", "--data.batch_size", "3", "--data.workers", "0", "--model.width", "0.125"]
    args += ["--model.input_size", "64", "--optim.epochs", "1", "--multibox.priors", "8", "--run.max_steps", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--run.max_steps", "2"]) == 0
    printed, err = capsys.readouterr()
    assert "resuming at step 1" in err and "MultiBox on" in printed and _results(out)["step"] == 2
    assert googlenet.load_model(out, task="multibox").priors.shape == (8, 4)


def test_resume_needs_only_the_checkpoint_not_the_initial_weights(fmnist_data, tmp_path):
    """The run's initial weights file is gone: the checkpoint holds every weight and the record of those weights,
    and the resumed run ends where an uninterrupted one does, bit for bit."""
    start = build_model("googlenet_bn", num_classes=10, width=0.125)
    start.meta.mean, start.meta.std = (0.3, 0.3, 0.3), (0.2, 0.2, 0.2)  # the record says how to feed it
    save_weights(start, tmp_path / "start.safetensors")
    extra = {"model.weights": str(tmp_path / "start.safetensors"), "optim.epochs": "1", "run.checkpoint_every": "2"}
    whole = train(train_config.load(None, tiny(fmnist_data, tmp_path / "whole", **extra)))
    cut = tiny(fmnist_data, tmp_path / "cut", **extra)
    train(train_config.load(None, {**cut, "run.max_steps": "2"}))
    (tmp_path / "start.safetensors").unlink()
    resumed = train(train_config.load(tmp_path / "cut" / "config.yaml", {"run.max_steps": "0"}), resume=True)
    assert resumed["step"] == whole["step"] and resumed["top1"] == whole["top1"]
    a = googlenet.load_model(tmp_path / "whole").state_dict()
    b = googlenet.load_model(tmp_path / "cut").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert googlenet.load_model(tmp_path / "cut").meta.mean == (0.3, 0.3, 0.3)


def test_fine_tuning_takes_variant_width_and_input_size_from_the_weights(fmnist_data, tmp_path, capfd):
    """No model options given: the weights' record says googlenet (the paper's) at width 0.25 and 40 px."""
    start = build_model("googlenet", num_classes=7, width=0.25)
    start.meta.input_size = 40
    save_weights(start, tmp_path / "narrow.safetensors")
    overrides = {k: v for k, v in tiny(fmnist_data, tmp_path / "run").items() if not k.startswith("model.")}
    overrides |= {"model.weights": str(tmp_path / "narrow.safetensors"), "run.max_steps": "1"}
    train(train_config.load(None, overrides))
    said = capfd.readouterr().err
    assert "model.name googlenet, model.width 0.25, model.input_size 40: from" in said
    saved = train_config.read_yaml((tmp_path / "run" / "config.yaml").read_text())["model"]
    assert (saved["name"], saved["width"], saved["input_size"]) == ("googlenet", 0.25, 40)
    tuned = googlenet.load_model(tmp_path / "run")
    assert (tuned.meta.variant, tuned.meta.options["width"], tuned.meta.input_size) == ("googlenet", 0.25, 40)
    # Set in the config, they stay the config's: a conflict is the loader's one-line error.
    with pytest.raises(ValueError, match="holds 'googlenet' weights, not 'googlenet_bn'"):
        train(train_config.load(None, {**overrides, "model.name": "googlenet_bn"}))


def test_detect_predict_takes_a_run_folder_and_draws_exactly_what_it_lists(scenes, tmp_path, capsys, monkeypatch):
    """A region classifier (in a run's folder) whose every window scores 0.32 for the first class: listed at
    --threshold 0.3, so drawn too (the drawing once filtered again at its own 0.5 and drew none)."""
    classes = VOCDetection(scenes, "test").classes
    model = build_model("googlenet_bn", num_classes=len(classes) + 1, width=0.125, aux=False)
    with torch.no_grad():  # softmax: background 8/25, first class 8/25 = 0.32, each other 1/25
        model.linear.weight.zero_()
        model.linear.bias.zero_()
        model.linear.bias[:2] = float(np.log(8))
    model.meta.task, model.meta.input_size, model.meta.class_names = "regions", 32, ["background", *classes]
    model.meta.head = RegionHead(context=3, proposals="ss2x", fg_iou=0.5)
    save_weights(model, tmp_path / "run" / "model.safetensors")
    image = str(VOCDetection(scenes, "test").image_path(0))
    drawn = []  # what reaches torchvision's drawing: (boxes, labels)
    real = torchvision.utils.draw_bounding_boxes
    monkeypatch.setattr(
        torchvision.utils,
        "draw_bounding_boxes",
        lambda im, boxes, names, **k: drawn.append((boxes, names)) or real(im, boxes, names, **k),
    )
    args = ["detect", "predict", "--checkpoint", str(tmp_path / "run"), image, "--json", "--threshold", "0.3"]
    assert main([*args, "--out", str(tmp_path / "drawn")]) == 0
    listed = json.loads(capsys.readouterr().out)["detections"]
    assert listed and {d["score"] for d in listed} == {0.32} and {d["class"] for d in listed} == {classes[0]}
    boxes, labels = drawn[0]
    assert labels == [f"{d['class']} {d['score']:.2f}" for d in listed]
    assert [[round(float(v), 1) for v in b] for b in boxes] == [d["box"] for d in listed]
    assert (tmp_path / "drawn" / (VOCDetection(scenes, "test").ids[0] + ".png")).is_file()


def test_weights_import_refuses_other_files_and_leaves_them_as_they_are(tmp_path, capsys):
    path = save_weights(build_model("googlenet_bn", num_classes=3, width=0.125), tmp_path / "ours.safetensors")
    before = path.read_bytes()
    assert main(["weights", "import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is no .caffemodel" in err and len(err.strip().splitlines()) == 1
    assert path.read_bytes() == before


# --- one registration each, from this file alone -------------------------------------------------------------


class CornerBoxes:
    """A proposer: the four quarters of the image and the whole of it."""

    def __call__(self, image):
        w, h = image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])
        quarters = [(0, 0, w / 2, h / 2), (w / 2, 0, w, h / 2), (0, h / 2, w / 2, h), (w / 2, h / 2, w, h)]
        return np.array([*quarters, (0, 0, w, h)], np.float32)


def test_a_proposal_method_registered_here_is_offered_by_the_commands(scenes, region_run, capsys, monkeypatch):
    from googlenet.detect import proposals

    corners = proposals.ProposalMethod("corners", "quarters and the whole", lambda checkpoint, tiles: CornerBoxes())
    monkeypatch.setitem(proposals.PROPOSERS, "corners", corners)
    assert main(["detect", "proposals", "--data", str(scenes), "--method", "corners", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["method"] == "corners" and found["boxes_per_image"] == 5 and found["images"] == 2
    args = ["detect", "evaluate", "--checkpoint", str(region_run), "--data", str(scenes), "--proposals", "corners"]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["proposals_per_image"] == 5


def test_an_export_format_registered_here_is_written_checked_and_loaded(fmnist_data, tmp_path, capsys, monkeypatch):
    from googlenet.export import FORMATS, ExportFormat

    def write(model, path, example, calibration):
        return save_weights(model, path.with_name(path.name + ".safetensors")).rename(path)  # ours, renamed

    def load(path):
        return googlenet.load_model(_as_safetensors(path))

    monkeypatch.setitem(FORMATS, "plain", ExportFormat("plain", ".plain", write, load))
    model = build_model("googlenet_bn", num_classes=10, width=0.125)
    model.meta.input_size = 32
    weights = save_weights(model, tmp_path / "w.safetensors")
    args = ["export", "--checkpoint", str(weights), "--format", "plain", "--root", str(fmnist_data)]
    assert main([*args, "--check-images", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(tmp_path / "w.plain") and report["relative_diff"] <= 1e-4
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(image)
    assert main(["predict", "--checkpoint", report["path"], str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"]


def test_a_module_added_to_model_formats_is_a_format(tmp_path, monkeypatch):
    """A built-in export format is one new file: a module in googlenet/model/formats/ that defines FORMAT."""
    import sys

    import googlenet.model.formats as formats
    from googlenet.model import exported
    from googlenet.registry import Registry

    (tmp_path / "plainfmt.py").write_text(
        "from googlenet.model.formats import ExportFormat\n"
        "FORMAT = ExportFormat('plainfmt', '.plain', write=print, load=print)\n"
    )
    monkeypatch.setattr(formats, "__path__", [*formats.__path__, str(tmp_path)])
    monkeypatch.setattr(exported, "FORMATS", Registry("export format"))
    try:
        exported.find_formats()
    finally:
        sys.modules.pop("googlenet.model.formats.plainfmt", None)
    assert sorted(exported.FORMATS) == ["executorch", "onnx", "openvino", "openvino_bf16", "plainfmt", "torchscript"]
    assert exported.exported_format(tmp_path / "w.bf16.openvino.xml") is exported.FORMATS["openvino_bf16"]
    assert exported.exported_format(tmp_path / "w.plain") is exported.FORMATS["plainfmt"]
    assert exported.exported_format(tmp_path / "w.int8.onnx") is exported.FORMATS["onnx"]


def _as_safetensors(path):
    copy = path.with_name(path.name + ".safetensors")
    copy.write_bytes(path.read_bytes())
    return copy


class Stripes(torch.utils.data.Dataset):
    """A dataset layout: 40 images of horizontal or vertical stripes, two classes."""

    def __init__(self, split):
        self.split, self.classes = split, ["horizontal", "vertical"]

    def __len__(self):
        return 40

    def __getitem__(self, index):
        stripes = np.zeros((32, 32, 3), np.uint8)
        label = index % 2
        if label:
            stripes[:, ::4] = 255
        else:
            stripes[::4] = 255
        return Image.fromarray(stripes), label


def test_a_dataset_layout_registered_here_trains_and_evaluates(tmp_path, capsys, monkeypatch):
    from googlenet.data import loaders

    layout = loaders.DatasetLayout("stripes", "stripes", lambda root, split, loader: Stripes(split), needs_root=False)
    monkeypatch.setitem(loaders.DATASETS, "stripes", layout)
    out = tmp_path / "run"
    args = ["train", "--data.dataset", "stripes", "--data.val_split", "test", "--out", str(out)]
    args += ["--model.width", "0.125", "--model.input_size", "32", "--data.batch_size", "8", "--data.workers", "0"]
    assert main([*args, "--optim.epochs", "1", "--run.max_steps", "2"]) == 0
    assert googlenet.load_model(out).meta.class_names == ["horizontal", "vertical"]
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data", "stripes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 40


def test_a_learning_rate_schedule_registered_here_trains(fmnist_data, tmp_path, monkeypatch):
    from googlenet.train import schedule

    def halving(step, optim, steps_per_epoch):
        return optim.lr / 2**step

    monkeypatch.setitem(schedule.SCHEDULES, "halving", halving)
    out = tmp_path / "run"
    args = ["train", *[f"--{k}={v}" for k, v in tiny(fmnist_data, out).items()], "--optim.schedule", "halving"]
    assert main([*args, "--run.max_steps", "3", "--optim.lr", "0.08"]) == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in steps if r["kind"] == "step"] == [0.08, 0.04, 0.02]
    assert main([*args[:-2], "--optim.schedule", "cosine"]) == 2  # not registered: one line


def test_fine_tuning_from_a_caffemodel_needs_no_model_options(fmnist_data, tmp_path, capfd):
    """The default config is googlenet_bn: a .caffemodel's record says the paper's googlenet (and its width)."""
    from test_caffe import WIDTH, write_caffemodel

    caffe = write_caffemodel(build_model("googlenet", width=WIDTH).eval(), tmp_path / "net.caffemodel")
    overrides = {k: v for k, v in tiny(fmnist_data, tmp_path / "run").items() if not k.startswith("model.")}
    train(train_config.load(None, {**overrides, "model.weights": str(caffe), "run.max_steps": "1"}))
    assert f"model.name googlenet, model.width {WIDTH}: from {caffe}'s record" in capfd.readouterr().err
    tuned = googlenet.load_model(tmp_path / "run")
    assert (tuned.meta.variant, tuned.meta.options["width"], tuned.meta.num_classes) == ("googlenet", WIDTH, 10)
