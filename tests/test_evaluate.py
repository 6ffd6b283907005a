"""Section 7: the crop schemes' geometry, averaging over crops and models, Table 3, `evaluate` and `predict`."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from googlenet import build_model, save_weights
from googlenet.cli import main
from googlenet.data.fashion_mnist import CLASSES
from googlenet.data.images import load_image
from googlenet.data.multicrop import PAPER_SCALES, CropSpec, boxes_for, multi_crop, paper_boxes, ten_boxes, unique
from googlenet.data.transforms import eval_transform
from googlenet.evaluate import EvaluationSpec, evaluate, multicrop
from googlenet.evaluate.driver import inference_on_dataset
from googlenet.evaluate.multicrop import CropEnsemble, collate, pool_crops, run
from googlenet.evaluate.table3 import table3

from conftest import assert_float32_close

SIZE = 32


def _image(height, width, seed=0):
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("height,width", [(375, 500), (500, 375)])  # a typical ImageNet photo, both ways
def test_144_crops_geometry(height, width):
    SIZE = 224  # the paper's geometry: scales 256, 288, 320, 352
    boxes = paper_boxes(height, width, SIZE)
    assert len(boxes) == 144 == len(set(boxes))
    landscape = width > height
    sides = list(PAPER_SCALES)
    assert sorted({min(b.resized) for b in boxes}) == sides
    for side in sides:
        at_scale = [b for b in boxes if min(b.resized) == side]
        assert len(at_scale) == 36
        rh, rw = at_scale[0].resized
        assert abs(max(rh, rw) / side - max(height, width) / min(height, width)) < 0.05  # aspect ratio kept
        squares = [b for b in at_scale if b.height == side and not b.mirror]  # the whole squares
        along = [b.left if landscape else b.top for b in squares]
        across = [b.top if landscape else b.left for b in squares]
        assert along == [0, ((rw if landscape else rh) - side) // 2, (rw if landscape else rh) - side]
        assert across == [0, 0, 0]
        for square in squares:
            inside = [b for b in at_scale if not b.mirror and b.height == SIZE]
            inside = [b for b in inside if square.top <= b.top <= square.top + side - SIZE]
            inside = [b for b in inside if square.left <= b.left <= square.left + side - SIZE]
            corners = {(b.top - square.top, b.left - square.left) for b in inside}
            far = side - SIZE
            assert corners >= {(0, 0), (0, far), (far, 0), (far, far), (round(far / 2), round(far / 2))}
    # Each crop is followed by its mirror; the mirror's pixels are the crop's, flipped left-right.
    image = _image(height, width)
    crops = multi_crop(image, boxes, SIZE)
    assert crops.shape == (144, 3, SIZE, SIZE)
    assert len({c.numpy().tobytes() for c in crops}) == 144
    for i in range(0, 144, 2):
        assert not boxes[i].mirror and boxes[i + 1].mirror
        assert torch.equal(crops[i + 1], crops[i].flip(-1))
    # A corner crop holds exactly that corner of the resized image; a whole square is resized to the input.
    resized = F.resize(image, list(boxes[0].resized), antialias=True)
    assert torch.equal(crops[0], resized[:, :SIZE, :SIZE])  # top-left corner of the first square
    last_square = boxes[-2]  # the whole right (bottom) square at 352/224 scale, unmirrored
    big = F.resize(image, list(last_square.resized), antialias=True)
    r = F.crop(big, last_square.top, last_square.left, last_square.height, last_square.width)
    assert torch.equal(crops[-2], F.resize(r, [SIZE, SIZE], antialias=True))
    corner = boxes[-6]  # bottom-right corner crop of that square
    assert (corner.top + SIZE, corner.left + SIZE) == last_square.resized
    assert torch.equal(crops[-6], big[:, -SIZE:, -SIZE:])


def test_ten_crops_are_torchvisions_tencrop():
    image = _image(45, 60)
    ours = multi_crop(image, ten_boxes(45, 60, SIZE), SIZE)
    resized = F.resize(image, [round(SIZE * 256 / 224)], antialias=True)
    theirs = F.ten_crop(resized, [SIZE, SIZE])
    assert torch.equal(ours, torch.stack(theirs))
    assert len({c.numpy().tobytes() for c in ours}) == 10


@pytest.mark.parametrize("crop_pct", [0.875, 1.0])
def test_one_crop_is_the_evaluation_transform(crop_pct):
    image = _image(45, 60)
    ours = multi_crop(image, boxes_for(1, 45, 60, SIZE, crop_pct), SIZE)[0]
    theirs = eval_transform(SIZE, (0, 0, 0), (1, 1, 1), crop_pct)(F.to_pil_image(image))
    assert torch.allclose(ours.float() / 255, theirs)


def test_two_crops_are_the_centre_crop_and_its_mirror():
    image = _image(45, 60)
    one, two = (multi_crop(image, boxes_for(n, 45, 60, SIZE, 0.875), SIZE) for n in (1, 2))
    assert two.shape[0] == 2 and torch.equal(two[0], one[0]) and torch.equal(two[1], one[0].flip(-1))


def test_square_images_have_48_distinct_crops_each_counted_3_times():
    boxes, counts = unique(paper_boxes(28, 28, SIZE))
    assert len(boxes) == 48 and counts == [3] * 48


def _tiny_models(n, classes=10, size=SIZE):
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = build_model("googlenet_bn", num_classes=classes, width=0.125, aux=False).eval()
        model.meta = dataclasses.replace(
            model.meta, input_size=size, crop_pct=1.0, class_names=[f"c{i}" for i in range(classes)]
        )
        models.append(model)
    return models


class _Images(torch.utils.data.Dataset):
    def __init__(self, shapes, classes=10):
        self.items = [(F.to_pil_image(_image(h, w, seed=i)), i % classes) for i, (h, w) in enumerate(shapes)]
        self.classes = [f"c{i}" for i in range(classes)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _crop_mean(model, cut):
    """The mean softmax over one image's crops (uint8-valued floats / 255), normalised as the model's weights say."""
    return model(F.normalize(cut, list(model.meta.mean), list(model.meta.std))).softmax(1).mean(0)


@pytest.mark.parametrize("crops", [2, 10, 144])
def test_evaluation_averages_softmax_over_all_crops_and_models(crops):
    """The evaluator's probabilities equal the plain mean over every crop (duplicates included) and model."""
    models = _tiny_models(2)
    data = _Images([(28, 28), (30, 50), (50, 30)])
    collected, _ = run(
        CropEnsemble(models, "mean"), data, CropSpec.of(models, crops), batch_size=2, workers=0, progress=False
    )
    got = collected.model_probs()
    with torch.no_grad():
        for m, model in enumerate(models):
            for i, (image, _) in enumerate(data):
                pixels = F.to_image(image)
                cut = multi_crop(pixels, boxes_for(crops, *pixels.shape[-2:], SIZE, 1.0), SIZE).float() / 255
                assert_float32_close(got[m, i], _crop_mean, model, cut, terms=len(cut))
    targets = torch.tensor([label for _, label in data])
    ensemble = got.mean(0)
    assert collected.evaluate()["top1"] == (ensemble.argmax(1) == targets).float().mean().item()


def test_max_pooling_over_crops():
    probs = torch.tensor([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    owner, weights = torch.tensor([0, 0, 1]), torch.tensor([1.0, 3.0, 1.0])
    assert torch.allclose(pool_crops(probs, weights, owner, 2, "max"), torch.tensor([[0.7, 0.9], [0.5, 0.5]]))
    assert torch.allclose(pool_crops(probs, weights, owner, 2, "mean"), torch.tensor([[0.55, 0.45], [0.5, 0.5]]))
    batch = collate([(torch.zeros(2, 3, 4, 4), torch.ones(2), 5), (torch.zeros(1, 3, 4, 4), torch.ones(1), 7)])
    assert batch[2].tolist() == [0, 0, 1] and batch[3].tolist() == [5, 7]


def test_table3_rows(tmp_path):
    models = _tiny_models(3)
    data = _Images([(28, 28)] * 4)
    result = table3(models, ["a", "b", "c"], data, crops=(1, 10), batch_size=4, workers=0, progress=False)
    assert [(r["models"], r["crops"], r["cost"]) for r in result["rows"]] == [
        (1, 1, 1),
        (1, 10, 10),
        (3, 1, 3),
        (3, 10, 30),
    ]
    assert result["rows"][0]["top5_error_change"] == 0
    best = max(result["models"], key=lambda m: m["top1"])
    assert result["best_model"] == best["checkpoint"] and result["rows"][0]["top1"] == best["top1"]


@pytest.fixture
def checkpoint(tmp_path):
    model = _tiny_models(1)[0]
    model.meta = dataclasses.replace(
        model.meta,
        class_names=list(CLASSES),
        mean=(0.286,) * 3,
        std=(0.353,) * 3,
    )
    return str(save_weights(model, tmp_path / "tiny.safetensors"))


def test_evaluate_json_interface(fmnist, checkpoint, capsys, tmp_path):
    args = ["evaluate", "--checkpoint", checkpoint, checkpoint, "--root", str(fmnist), "--limit", "5", "--workers", "0"]
    assert main([*args, "--crops", "10", "--json", "--out", str(tmp_path / "r")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 5 and result["crops"] == 10 and result["models"] == 2
    assert 0 <= result["top1"] <= result["top5"] <= 1
    assert result == json.loads((tmp_path / "r" / "evaluation.json").read_text())
    timed = {"seconds"}
    python = evaluate(EvaluationSpec((checkpoint, checkpoint), crops=10, root=str(fmnist), limit=5, workers=0))
    assert {k: v for k, v in python.items() if k not in timed} == {k: v for k, v in result.items() if k not in timed}
    assert main([*args, "--table3", "--out", str(tmp_path / "t3")]) == 0
    assert {p.name for p in (tmp_path / "t3").iterdir()} == {"table3.md", "table3.json", "table3.png"}
    assert "| Models | Crops | Cost | Top-5 error |" in (tmp_path / "t3" / "table3.md").read_text()


def _write_images(folder):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    paths = {
        "photo.jpg": Image.fromarray(rgb),
        "gray.png": Image.fromarray(rgb[..., 0]),
        "rgba.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]])),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "deep.png": Image.fromarray(rng.integers(0, 65536, (30, 40), dtype=np.uint16)),
    }
    for name, image in paths.items():
        image.save(folder / name)
    return [str(folder / name) for name in paths]


def test_load_image_modes(tmp_path):
    for path in _write_images(tmp_path):
        image = load_image(path)
        assert image.mode == "RGB" and image.size == (40, 30), path
    deep = np.asarray(Image.open(tmp_path / "deep.png"), dtype=np.float64)
    got = np.asarray(load_image(tmp_path / "deep.png"))[..., 0]
    assert np.abs(got - deep / 257).max() <= 0.5 + 1e-9  # scaled from 16 bits, not clipped


def test_the_driver_runs_the_model_and_the_evaluator_only_collects():
    """inference_on_dataset: reset first, every batch but the empty (None) ones through the model, then evaluate."""
    seen = []

    class Collect:
        def reset(self):
            seen.append("reset")

        def process(self, inputs, outputs):
            seen.append((inputs, outputs))

        def evaluate(self):
            return {"batches": len(seen) - 1}

    result, seconds = inference_on_dataset(lambda x: 10 * x, [1, None, 2], Collect())
    assert seen == ["reset", (1, 10), (2, 20)] and result == {"batches": 2} and seconds >= 0


def test_predict(checkpoint, tmp_path, capsys):
    images = _write_images(tmp_path)
    assert main(["predict", "--checkpoint", checkpoint, *images, "--crops", "10", "--topk", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results == multicrop.predict([checkpoint], images, crops=10, topk=3)
    assert [r["image"] for r in results] == images
    for r in results:
        probs = [p["probability"] for p in r["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert r["predictions"][0]["class"] in CLASSES
    assert main(["predict", "--checkpoint", checkpoint, images[0]]) == 0
    assert "%" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["missing.png", "notes.png"])
def test_predict_bad_file_is_one_line(checkpoint, tmp_path, bad):
    (tmp_path / "notes.png").write_text("not an image")
    done = subprocess.run(
        [sys.executable, "-m", "googlenet", "predict", "--checkpoint", checkpoint, str(tmp_path / bad)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and bad in done.stderr


def test_an_imagefolder_copy_of_the_test_set_gives_the_same_top1(fmnist, checkpoint, tmp_path, capsys):
    """Folders named as a file system allows (0_T-shirt_top/ for T-shirt/top), in another order than the
    classes, are matched to the model's classes; a folder that matches none is named in one line."""
    from googlenet.data.fashion_mnist import FashionMNIST

    test = FashionMNIST(fmnist, "test")
    folder = tmp_path / "test"
    for k in range(len(test)):
        image, label = test[k]
        name = CLASSES[label].replace("/", "_")
        where = folder / (f"{label}_{name}" if label % 2 else name.upper())  # both spellings, another sort order
        where.mkdir(parents=True, exist_ok=True)
        image.save(where / f"{k}.png")
    args = ["evaluate", "--checkpoint", checkpoint, "--workers", "0", "--json"]
    assert main([*args, "--root", str(fmnist)]) == 0
    idx = json.loads(capsys.readouterr().out)
    assert main([*args, "--data", str(folder)]) == 0
    folders = json.loads(capsys.readouterr().out)
    assert folders["images"] == idx["images"] == len(test) and folders["top1"] == idx["top1"]
    (folder / "zebra").mkdir()
    test[0][0].save(folder / "zebra" / "z.png")
    assert main([*args, "--data", str(folder)]) == 2
    assert "zebra" in capsys.readouterr().err
