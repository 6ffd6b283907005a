"""MultiBox: the matching loss by hand, k-means priors, proposals inside the image."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from googlenet import build_model, load_model
from googlenet.detect.multibox import BoxTransform, MultiBox, image_proposals, kmeans_priors, match, matching_loss


def test_matching_loss_by_hand_two_priors_one_box():
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]])
    logits = torch.tensor([[0.0, math.log(3)]])  # confidences 0.5 and 0.75
    truth = [torch.tensor([[0.0, 0.0, 0.5, 0.6]])]
    # Matching box 1: 0.15 * 0.01 - log 0.5 - log 0.25 = 2.0809; box 2: 0.15 * 0.91 - log 0.75 - log 0.5 = 1.1173.
    assert match(boxes[0], logits[0], truth[0]).tolist() == [-1, 0]
    expected = 0.3 / 2 * 0.91 - math.log(0.75) - math.log(1 - 0.5)
    assert matching_loss(boxes, logits, truth).item() == pytest.approx(expected, rel=1e-5)
    # With no ground truth every confidence is pushed to 0.
    assert matching_loss(boxes, logits, [torch.zeros(0, 4)]).item() == pytest.approx(
        -math.log(0.5) - math.log(0.25), rel=1e-5
    )


def test_priors_are_kmeans_centres():
    rng = np.random.default_rng(0)
    centres = np.array([[0.1, 0.1, 0.3, 0.3], [0.5, 0.4, 0.9, 0.95]])
    boxes = np.concatenate([c + rng.normal(0, 0.01, (200, 4)) for c in centres])
    priors = kmeans_priors(boxes, 2, seed=0)
    order = np.argsort(priors[:, 0])
    assert np.abs(priors[order] - centres).max() < 0.01
    with pytest.raises(ValueError, match="at least 5"):
        kmeans_priors(boxes[:3], 5)


def test_multibox_starts_at_its_priors_and_proposes_boxes_inside_the_image():
    priors = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.2, 0.3, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]])
    model = MultiBox(build_model("googlenet_bn", num_classes=2, width=0.125, aux=False), priors).eval()
    boxes, logits = model(torch.randn(2, 3, 64, 64))
    assert boxes.shape == (2, 3, 4) and logits.shape == (2, 3)
    assert torch.allclose(boxes, priors.expand(2, -1, -1))
    transform = BoxTransform(64, (0.5,) * 3, (0.25,) * 3, train=False)
    found = [image_proposals(model, Image.new("RGB", (w, h)), transform, top=2) for h, w in [(375, 500), (300, 300)]]
    for got, (h, w) in zip(found, [(375, 500), (300, 300)], strict=True):
        assert got.shape[1] == 4 and 1 <= len(got) <= 2
        assert (got[:, :2] >= 0).all() and (got[:, 2] <= w).all() and (got[:, 3] <= h).all()


def test_tiles_cover_the_image_with_half_size_crops_and_boxes_map_back():
    from googlenet.detect.multibox import views

    found = views(400, 300, 3)
    assert found[0] == (0, 0, 400, 300) and len(found) == 10
    assert {(x2 - x1, y2 - y1) for x1, y1, x2, y2 in found[1:]} == {(200, 150)}
    assert {(x1, y1) for x1, y1, _, _ in found[1:]} == {(x, y) for x in (0, 100, 200) for y in (0, 75, 150)}
    assert views(400, 300, 1) == [(0, 0, 400, 300)]
    # A prior that fills the view: the whole image, and each tile itself, come back in image pixels.
    model = MultiBox(build_model("googlenet_bn", num_classes=2, width=0.125, aux=False), torch.tensor([[0, 0, 1.0, 1]]))
    transform = BoxTransform(64, (0.5,) * 3, (0.25,) * 3, train=False)
    boxes = image_proposals(model.eval(), Image.new("RGB", (400, 300)), transform, top=20, iou=0.99, tiles=3)
    assert sorted(map(tuple, boxes.round().astype(int).tolist())) == sorted(found)


def test_multibox_trains_in_the_shared_loop(fmnist, tmp_path, capsys):
    from googlenet.cli import main
    from googlenet.detect.multibox import load_multibox

    scenes = str(tmp_path / "scenes")
    for split in ("train", "test"):
        assert main(["data", "scenes", "--out", scenes, "--split", split, "--count", "6", "--root", str(fmnist)]) == 0
    out = tmp_path / "mb"
    args = ["detect", "train-multibox", "--out", str(out), "--data.dataset", "voc", "--data.root", scenes]
    args += ["--data.val_split", "test", "--data.batch_size", "3", "--data.workers", "0", "--model.width", "0.125"]
    args += ["--model.input_size", "64", "--optim.epochs", "1", "--optim.lr", "0.01", "--multibox.priors", "8"]
    assert main(args) == 0
    assert "MultiBox on" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["recall"] <= 1 and results["step"] == 2 and "raw_recall" in results
    model = load_multibox(out / "model.safetensors")
    assert model.priors.shape == (8, 4) and model.meta.head.top == 200
    transform = BoxTransform(model.meta.input_size, model.meta.mean, model.meta.std, train=False)
    found = image_proposals(model, Image.new("RGB", (500, 375)), transform, top=5)
    assert found.shape[1] == 4 and len(found) <= 5
    with pytest.raises(ValueError, match="multibox weights, not a classifier"):
        load_model(out / "model.safetensors")
    assert main([*args, "--resume", "--optim.epochs", "2"]) == 0  # resumes in the same loop
    assert json.loads((out / "results.json").read_text())["step"] == 4
    capsys.readouterr()
    query = [
        "detect",
        "proposals",
        "--data",
        scenes,
        "--limit",
        "2",
        "--json",
        "--multibox",
        str(out / "model.safetensors"),
    ]
    assert main([*query, "--method", "paper"]) == 0
    paper = json.loads(capsys.readouterr().out)
    sources = paper["sources"]
    assert sources["multibox"]["boxes_per_image"] <= 200
    total = sources["ss2x"]["boxes_per_image"] + sources["multibox"]["boxes_per_image"]
    assert paper["boxes_per_image"] == pytest.approx(total)
    assert paper["recall"] >= max(sources["ss2x"]["recall"], sources["multibox"]["recall"])
