"""Section 8's data: VOC/ILSVRC XML round trip, generated scenes with tight boxes, Selective Search proposals."""

import json

import numpy as np
import pytest
from PIL import Image

from googlenet.cli import main
from googlenet.data.detection import Annotation, VOCDetection, read_xml, write_xml
from googlenet.data.scenes import STYLES, make_scene
from googlenet.detect.proposals import ProposalCache, proposer_for, recall, unique_boxes


def test_xml_round_trip(tmp_path):
    note = Annotation(
        "a.jpg",
        500,
        375,
        np.array([[0, 0, 10, 20], [47, 11, 300, 375]], np.float32),
        ["cat", "dog"],
        np.array([False, True]),
        "photo",
    )
    write_xml(note, tmp_path / "a.xml")
    back = read_xml(tmp_path / "a.xml")
    assert (back.filename, back.width, back.height, back.names) == ("a.jpg", 500, 375, ["cat", "dog"])
    assert back.style == "photo"
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


def _placed(scene, x0, y0, values):
    """An article-sized array `values` put at (x0, y0) on an image-sized canvas of zeros, cut by the border."""
    height, width = scene.background.shape[:2]
    canvas = np.zeros((height + 2000, width + 2000, *values.shape[2:]), values.dtype)  # room for cut articles
    canvas[1000 + y0 : 1000 + y0 + values.shape[0], 1000 + x0 : 1000 + x0 + values.shape[1]] = values
    return canvas[1000 : 1000 + height, 1000 : 1000 + width]


def _visible(scene):
    """Each pasted article's pixels inside the image (alpha >= 0.5), and those of them not under a later
    article's alpha >= 0.5 (the visible ones), worked out from the layers."""
    masks = [_placed(scene, x0, y0, alpha >= 0.5) for x0, y0, _, alpha in scene.layers]
    return masks, [m & ~np.any(masks[k + 1 :], axis=0) if k + 1 < len(masks) else m for k, m in enumerate(masks)]


@pytest.mark.parametrize("style", STYLES)
def test_each_style_boxes_bound_the_visible_pixels(style):
    rng = np.random.default_rng(0)
    cut = covered = 0
    for k in range(12):
        scene = make_scene(rng, _Articles(), style, "train" if k % 2 else "test")
        image = np.asarray(scene.image)
        assert scene.style == style and 300 <= image.shape[1] <= 500 and 300 <= image.shape[0] <= 375
        assert 1 <= len(scene.boxes) == len(scene.labels) == len(scene.layers) <= 6
        # The picture is the background with the layers pasted in order, so the layers are what is seen.
        redrawn = scene.background.copy()
        for x0, y0, colour, alpha in scene.layers:
            a = _placed(scene, x0, y0, alpha)[..., None]  # 0 where the article is not: the pixel stays
            redrawn = redrawn * (1 - a) + _placed(scene, x0, y0, colour) * a
        assert np.array_equal(np.clip(redrawn, 0, 255).astype(np.uint8), image)
        for box, inside, seen, (_, _, _, alpha) in zip(scene.boxes, *_visible(scene), scene.layers, strict=True):
            ys, xs = np.nonzero(seen)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert len(xs) >= 0.5 * (alpha >= 0.5).sum()  # at least half of each article in sight
            cut += int(inside.sum() < (alpha >= 0.5).sum())
            covered += int(len(xs) < inside.sum())
    assert cut and covered  # both happen: the check above saw truncated and occluded articles


def test_boxes_equal_the_visible_pixels_of_differently_coloured_articles(monkeypatch):
    """On a black background with each article a flat colour of its own, the pixels of that colour are the
    article's visible ones: each box is their bounding box, borders and occlusion included."""
    import googlenet.data.scenes as scenes

    real_article = scenes._article
    count = iter(range(1, 10**6))

    def flat(rng, pixels, side):
        colour, alpha = real_article(rng, pixels, side)
        return np.full_like(colour, float(next(count) % 250 + 5)), (alpha >= 0.5).astype(np.float32)

    monkeypatch.setattr(scenes, "_background", lambda rng, w, h, style, split: np.zeros((h, w, 3), np.float32))
    monkeypatch.setattr(scenes, "_article", flat)
    for seed in range(40):
        scene = make_scene(np.random.default_rng(seed), _Articles(), max_overlap=0.6)
        image = np.asarray(scene.image)[..., 0]
        assert len({float(layer[2][0, 0, 0]) for layer in scene.layers}) == len(scene.layers)
        for box, (_, _, colour, _) in zip(scene.boxes, scene.layers, strict=True):
            ys, xs = np.nonzero(image == colour[0, 0, 0])
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_style_option_selects_the_styles(fmnist, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["data", "scenes", "--out", str(out), "--count", "4", "--root", str(fmnist)]
    assert main([*args, "--style", "texture", "photo"]) == 0
    assert [a.style for a in VOCDetection(out, "test").annotations] == ["texture", "photo", "texture", "photo"]
    assert main([*args, "--count", "3", "--out", str(tmp_path / "all")]) == 0
    assert sorted(a.style for a in VOCDetection(tmp_path / "all", "test").annotations) == sorted(STYLES)
    with pytest.raises(SystemExit) as err:
        main([*args, "--style", "cartoon"])
    assert err.value.code == 2 and "invalid choice: 'cartoon'" in capsys.readouterr().err


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
    image = make_scene(np.random.default_rng(3), _Articles()).image
    pixels = np.asarray(image)
    found = {m: proposer_for(m)(pixels) for m in ("ss", "ss2x")}
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
