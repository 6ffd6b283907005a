"""The region classifier and the detector: R-CNN's 32/96 batches, window labels and warps, per-class NMS at
0.3, ensembles, and the train / evaluate / predict commands end to end on tiny generated scenes."""

import json

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from googlenet.cli import main
from googlenet.data.detection import VOCDetection
from googlenet.data.images import image_tensor
from googlenet.detect.detector import DetectorSpec, evaluate_detector, select
from googlenet.detect.proposals import DetectionData
from googlenet.detect.region_training import BalancedSampler, Windows
from googlenet.detect.regions import RegionEnsemble, sampled_part, warp_pixels, warp_regions
from googlenet.model import RegionHead, build_model


def _labels(step=50):
    labels = np.zeros(1000, np.int64)
    labels[::step] = np.arange(len(labels[::step])) % 3 + 1  # 1000 / step object windows, the rest background
    return labels


@pytest.mark.parametrize("world", [1, 2])
def test_batches_hold_32_object_and_96_background_windows(world):
    labels = _labels(8)  # 125 object windows: 3 batches draw 96 of them, none twice
    ranks = [BalancedSampler(labels, 128 // world, 0.25, 3, r, world, seed=3) for r in range(world)]
    keys = [list(s) for s in ranks]
    for r, got in enumerate(keys):
        assert len(got) == len(ranks[r]) == 3 * 128 // world and {e for _, e in got} == {0}
    for step in range(3):
        batch = np.concatenate([[i for i, _ in k[step * 128 // world : (step + 1) * 128 // world]] for k in keys])
        assert (labels[batch] > 0).sum() == 32 and (labels[batch] == 0).sum() == 96
    drawn = np.concatenate([[i for i, _ in k] for k in keys])
    assert len(set(drawn.tolist())) == len(drawn)  # no window twice while the pools last


def test_object_windows_cycle_when_there_are_few():
    labels = _labels(50)  # 20 object windows, 6 batches need 192: each is drawn before any is drawn again
    fg = [i for i, _ in BalancedSampler(labels, 128, 0.25, 6, 0, 1, seed=0) if labels[i] > 0]
    assert len(fg) == 6 * 32
    for start in range(0, 180, 20):
        assert set(fg[start : start + 20]) == set(np.flatnonzero(labels))


def test_sampler_is_reproducible_per_epoch_and_resumes():
    labels = _labels()
    sampler = BalancedSampler(labels, 64, 0.25, 4, 0, 1, seed=0)
    epoch0 = list(sampler)
    assert epoch0 == list(BalancedSampler(labels, 64, 0.25, 4, 0, 1, seed=0))
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != [i for i, _ in epoch0]
    sampler.set_epoch(0)
    sampler.skip = 2 * 64
    assert list(sampler) == epoch0[2 * 64 :] and len(sampler) == 2 * 64


def test_sampler_needs_both_kinds_of_window():
    with pytest.raises(ValueError, match="no object windows"):
        BalancedSampler(np.zeros(10, np.int64), 8, 0.25, 1, 0, 1, 0)


def test_per_class_nms_at_0_3():
    boxes = np.array(
        [
            [0, 0, 100, 100],  # class a, best
            [30, 0, 130, 100],  # class a, IoU 70/130 = 0.54 with the first: suppressed
            [60, 0, 160, 100],  # class a, IoU 40/160 = 0.25 with the first: kept
            [0, 0, 100, 100],  # same box as the first, but the classifier says class b: kept
        ],
        np.float32,
    )
    probs = torch.tensor([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.3, 0.7, 0.0], [0.4, 0.0, 0.6]])
    kept, scores, labels = select(boxes, probs, nms=0.3)
    assert kept.tolist() == boxes[[0, 2, 3]].tolist()
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.6]) and labels.tolist() == [0, 0, 1]
    # Background is never detected, low scores are dropped, and the cap keeps the best.
    assert 0.1 not in scores.tolist() and select(boxes, probs, 0.3, max_detections=1)[1].tolist() == [
        pytest.approx(0.9)
    ]


def _scenes(fmnist, tmp_path, train=4, test=2):
    root = tmp_path / "s"
    for split, count in (("train", train), ("test", test)):
        assert main(["data", "scenes", "--out", str(root), "--split", split, "--count", str(count),
                     "--root", str(fmnist)]) == 0  # fmt: skip
    return root


def test_windows_labels_and_warps(fmnist, tmp_path):
    data = VOCDetection(_scenes(fmnist, tmp_path, 2, 1), "train")
    truths = data.annotations[0].boxes
    shifted = truths + np.array([2, 0, 2, 0], np.float32)  # IoU well above 0.5: the object's class
    far = np.array([[0, 0, 8, 8]], np.float32)  # nothing there: background
    windows = Windows(data, [np.concatenate([shifted, far]), far], size=32, context=4, mean=(0.5, 0.5, 0.5))
    n = len(truths)
    assert len(windows) == 2 * n + 1 + len(data.annotations[1].boxes) + 1
    classes = data.labels(0) + 1
    assert windows.labels[:n].tolist() == classes.tolist() and windows.labels[n : 2 * n].tolist() == classes.tolist()
    assert windows.labels[2 * n] == 0 and windows.classes[0] == "background"
    region, label = windows[0]
    assert region.shape == (3, 32, 32) and region.min() >= 0 and region.max() <= 1 and label == classes[0]
    # A box at the corner is padded with the mean pixel outside the image.
    corner = warp_pixels(torch.zeros(3, 50, 50), torch.tensor([[0.0, 0.0, 20.0, 20.0]]), 32, 8, (0.5, 0.25, 0.75))
    assert torch.allclose(corner[0, :, 0, 0], torch.tensor([0.5, 0.25, 0.75]))
    # A window read from its image's decoded pixels, kept after the first read, is the warp of the whole image.
    whole = image_tensor(data.image_path(0))
    assert windows.image(0).dtype == torch.uint8 and windows.image(0) is windows.image(0)
    assert torch.equal(windows[0][0], warp_pixels(whole, torch.as_tensor(truths[:1]), 32, 4, (0.5, 0.5, 0.5))[0])


def test_warp_reads_only_the_part_the_boxes_sample():
    # warp_pixels converts and warps only the part of the image that roi_align samples for the boxes: the same
    # pixels as warping the whole image (`warp_regions`), boxes at the borders, inside, outside and tiny included.
    # The part's boxes are moved by an integer corner, exact in float32, but the grown boxes' centres are
    # rounded once more: sampling points move by a few float32 ulps of coordinates under 200 px (< 1e-4 px), and
    # a bilinear sample of values in [0, 1] moves by at most that much.
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 150, 200), dtype=torch.uint8)
    pixels = v2.functional.to_dtype(image, torch.float32, scale=True)
    mean = (0.4, 0.5, 0.6)
    shift = torch.tensor(mean)[:, None, None]
    corners = torch.rand(40, 2) * torch.tensor([230.0, 180.0]) - 15
    sizes = torch.rand(40, 2) * 60 + 0.5
    fixed = torch.tensor([[0.0, 0.0, 200.0, 150.0], [150.0, 100.0, 199.0, 149.0]])  # the whole, a corner
    boxes = torch.cat([fixed, torch.cat([corners, corners + sizes], 1)])
    for size, context in ((32, 4), (48, 3), (64, 0)):
        for box in boxes:
            whole = (warp_regions(pixels - shift, box[None], size, context) + shift).clamp(0, 1)
            for source in (image, pixels):
                assert torch.allclose(warp_pixels(source, box[None], size, context, mean), whole, atol=1e-4, rtol=0)
    assert sampled_part(boxes[2:3], 48, 3, 150, 200) != (slice(0, 150), slice(0, 200))  # a part, not the whole


def test_ensemble_averages_the_softmax(tmp_path):
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = build_model("googlenet_bn", num_classes=3, width=0.125, aux=False).eval()
        m.meta.task, m.meta.input_size, m.meta.class_names = "regions", 32, ["background", "a", "b"]
        m.meta.head = RegionHead(context=4, proposals="ss", fg_iou=0.5)
        models.append(m)
    pixels, boxes = torch.rand(3, 60, 80), np.array([[0, 0, 40, 30], [10, 10, 70, 50]], np.float32)
    both = RegionEnsemble(models).probs(pixels, boxes)
    each = [RegionEnsemble([m]).probs(pixels, boxes) for m in models]
    assert torch.allclose(both, (each[0] + each[1]) / 2, atol=1e-6)
    assert torch.allclose(both.sum(dim=1), torch.ones(2))
    # --flip: each window's scores averaged with its mirror image's, i.e. with the mirrored box's in the mirrored
    # image (roi_align samples mirrored points; the bound is float32 rounding of the sampling coordinates). The
    # head is scaled up so that the fresh network's scores are not all near 1/3.
    with torch.no_grad():
        models[0].linear.weight *= 100
    mirrored = np.stack([80 - boxes[:, 2], boxes[:, 1], 80 - boxes[:, 0], boxes[:, 3]], axis=1)
    plain, flipped = RegionEnsemble(models[:1]), RegionEnsemble(models[:1], flip=True)
    as_is, mirror = plain.probs(pixels, boxes), plain.probs(pixels.flip(-1), mirrored)
    assert (as_is - mirror).abs().max() > 1e-3  # the mirror is scored differently: the average is not a no-op
    assert torch.allclose(flipped.probs(pixels, boxes), (as_is + mirror) / 2, atol=1e-5)
    assert torch.allclose(flipped.probs(pixels, boxes), flipped.probs(pixels.flip(-1), mirrored), atol=1e-5)


def test_detect_train_evaluate_predict(fmnist, tmp_path, capsys):
    root = _scenes(fmnist, tmp_path)
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"r{seed}"
        args = ["detect", "train", "--config", "configs/detect_scenes.yaml", "--data.root", str(root),
                "--out", str(out), "--model.width", "0.125", "--model.input_size", "32", "--data.batch_size",
                "16", "--data.workers", "0", "--run.max_steps", "2", "--detect.val_windows", "40",
                "--run.seed", str(seed)]  # fmt: skip
        assert main(args) == 0
        runs.append(str(out / "model.safetensors"))
    assert "region classifier" in capsys.readouterr().out
    assert len(list((root / "proposals" / "ss2x").glob("train_*.npz"))) == 4  # cached for later runs
    result = {}
    args = ["detect", "evaluate", "--checkpoint", *runs, "--data", str(root), "--json", "--out", str(tmp_path / "ev")]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["map"] <= 1 and set(result["ap"]) <= set(VOCDetection(root, "test").classes)
    assert result["models"] == 2 and result["images"] == 2 and result["seconds_per_image"] > 0
    assert set(result["styles"]) == {"clutter", "texture"}  # the two test scenes' styles, each scored apart
    assert (tmp_path / "ev" / "precision_recall.png").is_file()
    spec, data = DetectorSpec(checkpoints=tuple(runs)), DetectionData(str(root))  # from Python: the same record
    record, _ = evaluate_detector(spec, data, progress=False)
    timed = {"seconds_per_image", "classify_seconds_per_image", "proposal_seconds_per_image", "wall_seconds"}
    assert {k: v for k, v in record.items() if k not in timed} == {
        k: v for k, v in result.items() if k not in timed | {"command"}
    }
    # classes matched by name: the same dataset listing them in another order, or (no classes.txt, as in VOC's
    # downloads) sorted by name, scores the same AP per class
    listing = root / "classes.txt"
    names = listing.read_text().splitlines()
    listing.write_text("\n".join(reversed(names)) + "\n")
    assert VOCDetection(root, "test").classes == names[::-1]
    assert evaluate_detector(spec, data, progress=False)[0]["ap"] == record["ap"]
    listing.unlink()
    assert VOCDetection(root, "test").classes != names  # only the classes that the annotations name, sorted
    assert evaluate_detector(spec, data, progress=False)[0]["ap"] == record["ap"]
    with pytest.raises(ValueError, match=r"dataset class\(s\) match none of the model's 2 classes"):
        VOCDetection(root, "test").matched_to(["no such class", "nor this"])
    listing.write_text("\n".join(names) + "\n")
    assert main(["detect", "fit-bbox", "--checkpoint", runs[0], "--data", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["windows"] > 0
    args = ["detect", "evaluate", "--checkpoint", runs[0], "--data", str(root), "--json", "--bbox-regression"]
    assert main(args) == 0 and json.loads(capsys.readouterr().out)["bbox_regression"] is True
    assert main([*args[:3], runs[1], *args[4:]]) == 2  # the second model has no regressors
    assert "fit-bbox" in capsys.readouterr().err
    assert main(["detect", "fit-svm", "--checkpoint", runs[0], "--data", str(root), "--images", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["positives"] == sum(len(a.boxes) for a in VOCDetection(root, "train").annotations)
    assert report["negative_images"] == 4 and report["path"].endswith("model.svm.safetensors")
    args = ["detect", "evaluate", "--checkpoint", runs[0], "--data", str(root), "--json", "--svm"]
    assert main(args) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["svm"] is True and 0 <= scored["map"] <= 1
    assert main([*args[:3], runs[1], *args[4:]]) == 2 and "fit-svm" in capsys.readouterr().err
    image = str(VOCDetection(root, "test").image_path(0))
    args = [
        "detect",
        "predict",
        "--checkpoint",
        runs[0],
        image,
        "--json",
        "--threshold",
        "0",
        "--out",
        str(tmp_path / "p"),
    ]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["image"] == image and record["detections"] and record["drawn"].endswith(".png")
    first = record["detections"][0]
    assert set(first) == {"box", "class", "score"} and len(first["box"]) == 4
    assert (tmp_path / "p").is_dir() and len(list((tmp_path / "p").glob("*.png"))) == 1


def test_detect_commands_reject_bad_input(tmp_path, capsys):
    assert main(["detect", "predict", "--checkpoint", str(tmp_path / "none.safetensors"), "x.jpg"]) == 2
    assert "image not found" in capsys.readouterr().err
    weights = tmp_path / "w.safetensors"
    from googlenet.model import save_weights

    save_weights(build_model("googlenet_bn", num_classes=3, width=0.125, aux=False), weights)
    (tmp_path / "x.jpg").write_bytes(b"")
    assert main(["detect", "predict", "--checkpoint", str(weights), str(tmp_path / "x.jpg")]) == 2
    assert "not a region classifier" in capsys.readouterr().err


def test_box_regression_targets_round_trip_and_fit_recovers_a_linear_map():
    from googlenet.detect import bbox

    proposals = torch.tensor([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 30.0, 30.0]])
    truths = torch.tensor([[12.0, 18.0, 60.0, 90.0], [5.0, 5.0, 25.0, 40.0]])
    assert torch.allclose(bbox.decode(proposals, bbox.encode(proposals, truths)), truths, atol=1e-4)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 16, generator=generator, dtype=torch.float64)
    classes = torch.arange(400) % 2
    true = torch.randn(2, 17, 4, generator=generator, dtype=torch.float64)
    y = bbox.apply(true, x)[torch.arange(400), classes]
    weights, report = bbox.fit(x, y, classes, 2)
    assert report["lambda"] == min(bbox.LAMBDAS) and report["heldout_error"] < 0.01 * report["heldout_error_without"]
    assert torch.allclose(weights.double(), true, atol=0.05)


def test_svm_separates_and_hard_negative_mining_finds_the_negatives_near_the_boundary():
    from googlenet.detect import svm

    generator = torch.Generator().manual_seed(0)
    positives = torch.randn(200, 8, generator=generator) * 0.3 + torch.tensor([2.0] + [0.0] * 7)
    easy = torch.randn(5000, 8, generator=generator) * 0.3 + torch.tensor([-6.0] + [0.0] * 7)
    hard = torch.randn(100, 8, generator=generator) * 0.3 + torch.tensor([-0.5] + [0.0] * 7)
    negatives = torch.cat([easy, hard])
    # The first round sees 50 random negatives (about one hard one); mining must bring in the rest.
    w, report = svm.mine(positives, negatives, c=1.0, rounds=3, first=50)
    margin = negatives @ w[:-1] + w[-1]
    assert report["rounds"] >= 1 and report["positives_missed"] == 0
    assert (margin[-100:] < 0).all() and (margin[:-100] < svm.EVICT).all()  # every negative on its side
    # the negatives as rows of a larger table (fit's per-class selection, read in place) give the same SVM
    table = torch.cat([positives, negatives])
    rows = torch.arange(len(positives), len(table))
    in_place, same = svm.mine(positives, table, c=1.0, rounds=3, first=50, rows=rows)
    assert torch.equal(in_place, w) and same == report
    only_first, _ = svm.mine(positives, negatives, c=1.0, rounds=0, first=50)
    assert ((negatives @ only_first[:-1] + only_first[-1])[-100:] >= 0).any()  # without mining some hard ones pass
    # scores(): the fitted scale and bias applied to every class at once
    svms = {"weight": torch.stack([w, -w]), "scale": torch.tensor([2.0])}
    both = svm.scores(svms, positives[:3] / 2)
    assert torch.allclose(both[:, 0], positives[:3] @ w[:-1] + w[-1], atol=1e-5)
    assert torch.allclose(both[:, 1], -both[:, 0])
