"""Section 8's data: VOC/ILSVRC XML round trip, generated scenes with tight boxes, Selective Search proposals."""

import json

import numpy as np
import pytest
from PIL import Image

from googlenet.cli import main
from googlenet.data.detection import Annotation, VOCDetection, read_xml, write_xml
from googlenet.data.scenes import make_scene
from googlenet.detect.proposals import METHODS, ProposalCache, recall, unique_boxes


def test_xml_round_trip(tmp_path):
    note = Annotation(
        "a.jpg",
        500,
        375,
        np.array([[0, 0, 10, 20], [47, 11, 300, 375]], np.float32),
        ["cat", "dog"],
        np.array([False, True]),
    )
    write_xml(note, tmp_path / "a.xml")
    back = read_xml(tmp_path / "a.xml")
    assert (back.filename, back.width, back.height, back.names) == ("a.jpg", 500, 375, ["cat", "dog"])
    assert np.array_equal(back.boxes, note.boxes) and back.difficult.tolist() == [False, True]
    assert "<xmin>1</xmin>" in (tmp_path / "a.xml").read_text()  # VOC's 1-based inclusive pixels


def test_ilsvrc_layout_without_suffix_in_filename(tmp_path):
    (tmp_path / "Annotations/DET/val").mkdir(parents=True)
    (tmp_path / "Data/DET/val").mkdir(parents=True)
    (tmp_path / "ImageSets/DET").mkdir(parents=True)
    note = Annotation(
        "ILSVRC2013_val_00000001", 40, 30, np.array([[1, 2, 30, 25]], np.float32), ["n01443537"], np.array([False])
    )
    write_xml(note, tmp_path / "Annotations/DET/val/ILSVRC2013_val_00000001.xml")
    Image.new("RGB", (40, 30)).save(tmp_path / "Data/DET/val/ILSVRC2013_val_00000001.JPEG", format="JPEG")
    (tmp_path / "ImageSets/DET/val.txt").write_text("ILSVRC2013_val_00000001 1\n")
    data = VOCDetection(
        tmp_path, annotations="Annotations/DET/val", images="Data/DET/val", image_set="ImageSets/DET/val.txt"
    )
    image, _ = data[0]
    assert image.size == (40, 30) and data.classes == ["n01443537"] and data.labels(0).tolist() == [0]


class _Articles:
    """Stand-in for FashionMNIST: 28x28 articles with a known shape (a filled rectangle on black)."""

    def __init__(self):
        self.classes = [f"c{i}" for i in range(10)]
        self.images = np.zeros((10, 28, 28), np.uint8)
        for i in range(10):
            self.images[i, 4 : 24 - i, 6:22] = 200
        self.targets = np.arange(10)

    def __len__(self):
        return 10


def test_scene_boxes_tightly_bound_their_articles():
    rng = np.random.default_rng(0)
    for _ in range(10):
        image, boxes, labels = make_scene(rng, _Articles(), max_overlap=0.0)
        assert 300 <= image.width <= 500 and 300 <= image.height <= 375 and 1 <= len(boxes) <= 6
        # Pasting the same articles on a black background shows their pixels: each box is their bounding box.
        assert len(boxes) == len(labels)
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
            assert x2 - x1 >= 6 and y2 - y1 >= 6


def test_scene_box_matches_pasted_pixels(monkeypatch):
    """On a black background with white articles a pixel's value is its alpha: the box bounds alpha >= 0.5."""
    import googlenet.data.scenes as scenes

    real_article = scenes._article

    def white(rng, pixels, side):
        colour, alpha = real_article(rng, pixels, side)
        return np.full_like(colour, 255.0), alpha

    monkeypatch.setattr(scenes, "_background", lambda rng, w, h: np.zeros((h, w, 3), np.float32))
    monkeypatch.setattr(scenes, "_article", white)
    for seed in range(5):
        image, boxes, _ = make_scene(np.random.default_rng(seed), _Articles(), max_objects=1)
        ys, xs = np.nonzero(np.asarray(image)[..., 0] >= 128)
        assert boxes.tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]


def test_scenes_command_writes_voc(fmnist, tmp_path, capsys):
    assert (
        main(["data", "scenes", "--out", str(tmp_path / "s"), "--split", "test", "--count", "3", "--root", str(fmnist)])
        == 0
    )
    data = VOCDetection(tmp_path / "s", "test")
    assert len(data) == 3 and len(data.classes) == 10
    image, annotation = data[0]
    assert image.size == (annotation.width, annotation.height) and len(annotation.boxes) >= 1


def test_selective_search_boxes_inside_the_image_and_2x_has_fewer():
    image, _, _ = make_scene(np.random.default_rng(3), _Articles())
    pixels = np.asarray(image)
    found = {m: METHODS[m](pixels) for m in ("ss", "ss2x")}
    for got in found.values():
        assert got.ndim == 2 and got.shape[1] == 4 and len(got) > 10
        assert (got[:, 0] >= 0).all() and (got[:, 1] >= 0).all()
        assert (got[:, 2] <= image.width).all() and (got[:, 3] <= image.height).all()
        assert (got[:, 2] > got[:, 0]).all() and (got[:, 3] > got[:, 1]).all()
        assert len(unique_boxes(got)) == len(got)
    assert len(found["ss2x"]) < len(found["ss"])


def test_recall_and_cache(tmp_path):
    truths = [np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32)]
    proposals = [np.array([[0, 0, 10, 12], [100, 100, 110, 110]], np.float32)]
    assert recall(proposals, truths) == pytest.approx(0.5)
    assert recall(proposals, truths, top=0) == 0
    cache = ProposalCache(tmp_path, "ss")
    assert cache.get("x") is None
    cache.put("x", proposals[0], 1.5)
    boxes, seconds = cache.get("x")
    assert np.array_equal(boxes, proposals[0]) and seconds == 1.5


def test_proposals_command_json(fmnist, tmp_path, capsys):
    main(["data", "scenes", "--out", str(tmp_path / "s"), "--count", "2", "--root", str(fmnist)])
    capsys.readouterr()
    args = ["detect", "proposals", "--data", str(tmp_path / "s"), "--method", "ss2x", "--limit", "1", "--json"]
    assert main([*args, "--plot", str(tmp_path / "r.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 1 and result["boxes_per_image"] > 0 and 0 <= result["recall"] <= 1
    assert result["seconds_per_image"] > 0 and (tmp_path / "r.png").is_file()
    assert len(list((tmp_path / "s" / "proposals" / "ss2x").glob("*.npz"))) == 1
