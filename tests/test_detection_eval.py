"""Detection mAP: hand-computed AP (a duplicate, a miss, a small object under its own threshold, two classes)."""

import numpy as np
import pytest
import torch

from googlenet.detect.evaluation import DetectionEvaluator, ilsvrc_thresholds, iou_matrix


def _case_one_class(metric):
    ev = DetectionEvaluator(["thing"], metric)
    # Image A: one object, found (0.9) and found again (0.8: a duplicate, a false positive).
    ev.add([[0, 0, 100, 100], [2, 2, 100, 100]], [0.9, 0.8], [0, 0], [[0, 0, 100, 100]], [0])
    # Image B: two objects, one found (0.7), one missed.
    ev.add([[0, 0, 50, 50]], [0.7], [0], [[0, 0, 50, 50], [200, 200, 300, 300]], [0, 0])
    return ev.evaluate()


def test_duplicate_and_miss_all_point_ap():
    # Ranked: TP, FP, TP of 3 objects -> recall 1/3, 1/3, 2/3 and precision 1, 1/2, 2/3:
    # area = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    for metric in ("ilsvrc", "voc2010"):
        result = _case_one_class(metric)
        assert result["ap"]["thing"] == pytest.approx(5 / 9) and result["map"] == pytest.approx(5 / 9)


def test_voc2007_eleven_points():
    # Best precision at recall >= 0, .1, .2, .3: 1; at .4, .5, .6: 2/3; above: 0 -> (4 + 3 * 2/3) / 11.
    assert _case_one_class("voc2007")["ap"]["thing"] == pytest.approx(6 / 11)


def test_small_object_under_its_own_threshold():
    truth = np.array([[0, 0, 10, 10]], float)
    assert ilsvrc_thresholds(truth)[0] == pytest.approx(100 / 400)  # min(0.5, wh / ((w + 10)(h + 10)))
    detection = [[0, 0, 10, 4]]  # IoU 0.4: enough for a 10x10 object under ILSVRC, not under VOC's 0.5
    assert iou_matrix(np.array(detection, float), truth)[0, 0] == pytest.approx(0.4)
    for metric, expected in (("ilsvrc", 1.0), ("voc2010", 0.0)):
        ev = DetectionEvaluator(["small"], metric)
        ev.add(detection, [0.5], [0], truth, [0])
        assert ev.evaluate()["ap"]["small"] == pytest.approx(expected)


def test_two_classes_and_a_wrong_label():
    ev = DetectionEvaluator(["cat", "dog"])
    truths, labels = [[0, 0, 40, 40], [50, 50, 90, 90]], [0, 1]
    # The cat is found; the dog box is labelled cat (a cat false positive) and found as dog at a lower score.
    ev.add([[0, 0, 40, 40], [50, 50, 90, 90], [50, 50, 90, 90]], [0.9, 0.8, 0.3], [0, 0, 1], truths, labels)
    result = ev.evaluate()
    assert result["ap"] == pytest.approx({"cat": 1.0, "dog": 1.0})  # the FP ranks after the cat's only TP
    ev.reset()
    ev.add([[50, 50, 90, 90], [0, 0, 40, 40], [50, 50, 90, 90]], [0.9, 0.8, 0.3], [0, 0, 1], truths, labels)
    result = ev.evaluate()  # now the cat FP ranks first: precision 1/2 at recall 1
    assert result["ap"]["cat"] == pytest.approx(0.5) and result["map"] == pytest.approx(0.75)


def test_ilsvrc_takes_the_best_unmatched_object_voc_the_best_object():
    # Two overlapping objects; the first detection overlaps both, best with object 1.
    truths = [[0, 0, 100, 100], [20, 0, 120, 100]]
    boxes, scores = [[10, 0, 110, 100], [20, 0, 120, 100]], [0.9, 0.8]
    ilsvrc = DetectionEvaluator(["x"], "ilsvrc")
    ilsvrc.add(boxes, scores, [0, 0], truths, [0, 0])
    voc = DetectionEvaluator(["x"], "voc2010")
    voc.add(boxes, scores, [0, 0], truths, [0, 0])
    # Detection 1 has IoU 0.818 with both; it takes object 0 (first of the tie). Detection 2 then matches
    # object 1 exactly in both metrics.
    assert ilsvrc.evaluate()["ap"]["x"] == pytest.approx(1.0) and voc.evaluate()["ap"]["x"] == pytest.approx(1.0)
    # Now detection 2 overlaps object 0 best (IoU 0.8) and object 1 less (0.6): VOC calls it a duplicate of
    # object 0; ILSVRC gives it the still-unmatched object 1.
    boxes = [[0, 0, 100, 100], [10, 0, 90, 100]]
    ilsvrc.reset(), voc.reset()
    ilsvrc.add(boxes, scores, [0, 0], [[0, 0, 100, 100], [30, 0, 110, 100]], [0, 0])
    voc.add(boxes, scores, [0, 0], [[0, 0, 100, 100], [30, 0, 110, 100]], [0, 0])
    assert ilsvrc.evaluate()["ap"]["x"] == pytest.approx(1.0)
    assert voc.evaluate()["ap"]["x"] == pytest.approx(0.5)


def test_voc_difficult_objects_are_ignored():
    ev = DetectionEvaluator(["x"], "voc2010")
    ev.add(
        [[0, 0, 10, 10], [20, 20, 40, 40]],
        [0.9, 0.8],
        [0, 0],
        [[0, 0, 10, 10], [20, 20, 40, 40]],
        [0, 0],
        [True, False],
    )
    assert ev.evaluate()["ap"]["x"] == pytest.approx(1.0)  # the difficult hit counts neither way


def _random_detections(seed):
    """Images with 1-3 large objects of 3 classes; detections: jittered copies (some duplicated, some with a
    wrong class), misses and random false positives, with random scores."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(25):
        n = rng.integers(1, 4)
        xy = rng.uniform(0, 200, (n, 2))
        truths = np.concatenate([xy, xy + rng.uniform(40, 120, (n, 2))], axis=1)
        labels = rng.integers(0, 3, n)
        boxes, det_labels = [], []
        for box, label in zip(truths, labels, strict=True):
            for _ in range(rng.integers(0, 3)):  # 0 = a miss, 2 = a duplicate
                boxes.append(box + rng.normal(0, 6, 4))
                det_labels.append(label if rng.random() > 0.15 else rng.integers(0, 3))
        for _ in range(rng.integers(0, 3)):
            xy = rng.uniform(0, 250, 2)
            boxes.append(np.concatenate([xy, xy + rng.uniform(20, 90, 2)]))
            det_labels.append(rng.integers(0, 3))
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        images.append((boxes, rng.random(len(boxes)), np.asarray(det_labels, np.int64), truths, labels))
    return images


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_torchmetrics_mean_average_precision(seed):
    """On objects of 40 px and more the ILSVRC threshold is 0.5 and its matching (best still-unmatched object)
    is COCO's at IoU 0.5; torchmetrics (pycocotools backend) interpolates AP at 101 recall points."""
    from torchmetrics import detection as torchmetrics  # the test extras install it with pycocotools

    images = _random_detections(seed)
    ours = DetectionEvaluator(["a", "b", "c"], "ilsvrc")
    theirs = torchmetrics.MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True, backend="pycocotools")
    for boxes, scores, labels, truths, truth_labels in images:
        ours.add(boxes, scores, labels, truths, truth_labels)
        theirs.update(
            [{"boxes": torch.tensor(boxes), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}],
            [{"boxes": torch.tensor(truths), "labels": torch.tensor(truth_labels)}],
        )
    result, reference = ours.evaluate(), theirs.compute()
    assert result["map"] == pytest.approx(float(reference["map"]), abs=0.01)
    per_class = dict(zip(reference["classes"].tolist(), reference["map_per_class"].tolist(), strict=True))
    for c, name in enumerate("abc"):
        assert result["ap"][name] == pytest.approx(per_class[c], abs=0.02)


def test_scores_per_scene_style():
    """A dataset whose images have a scene <style> is also scored per style: each style's mAP is that of its
    images alone (here: photo scenes all found, clutter ones half missed)."""
    from googlenet.data.detection import Annotation
    from googlenet.detect.detector import Detections, DetectionScores

    scores = DetectionScores(["thing"])
    box = np.array([[0, 0, 50, 50]], np.float32)
    for k, style in enumerate(["photo", "clutter", "photo", "clutter"]):
        found = box if style == "photo" or k == 1 else np.zeros((0, 4), np.float32)
        detections = Detections(found, np.full(len(found), 0.9 - 0.1 * k), np.zeros(len(found), np.int64),
                                {"total": 0.1})  # fmt: skip
        scores.process((k, Annotation(f"{k}.jpg", 99, 99, box, ["thing"], np.zeros(1, bool), style), np.zeros(1)),
                       detections)  # fmt: skip
    result = scores.evaluate()
    assert result["styles"] == {"clutter": {"map": 0.5, "ap": {"thing": 0.5}}, "photo": {"map": 1, "ap": {"thing": 1}}}
    assert result["map"] == pytest.approx(0.75) and len(scores.seconds) == 4
    scores.reset()
    assert "styles" not in scores.evaluate()
