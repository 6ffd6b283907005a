"""Detection (section 8): `googlenet data scenes` and the `googlenet detect` commands (proposals, MultiBox and
region classifier training, mAP, detecting new images, box regression)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from googlenet.cli.options import (
    Commands,
    add_checkpoint_option,
    add_detector_options,
    add_device_option,
    add_tiles_option,
    add_voc_options,
    detection_data,
    detector_spec,
    split_images,
)
from googlenet.cli.training import add_training_options, train


def scenes(a: argparse.Namespace) -> None:
    """Write detection scenes of Fashion-MNIST articles in VOC layout."""
    from googlenet.data.scenes import write_scenes

    folder = write_scenes(out=a.out, split=a.split, count=a.count, seed=a.seed, root=a.root, styles=a.style)
    print(
        f"{a.count} {a.split} scenes ({', '.join(a.style)}) in {folder} (JPEGImages/, Annotations/, "
        f"ImageSets/Main/{a.split}.txt, classes.txt)"
    )


def add_data(p: argparse.ArgumentParser) -> None:
    from googlenet.data.scenes import STYLES

    p.description = "Make datasets: detection scenes of real objects."
    sub = p.add_subparsers(title="data commands", metavar="COMMAND", required=True)
    s = sub.add_parser(
        "scenes",
        help="detection scenes of real Fashion-MNIST articles on clutter, textures and photographs (VOC XML + JPEG)",
        description="Paste 1-6 Fashion-MNIST articles per scene (about 20 px up to 90% of the shorter side, "
        "aspect jitter, random tint, gain and offset, a fifth inverted; cut by the border or covered by later "
        "ones, at least half of each in sight) onto a background of one style: clutter (gradients, a sinusoid, "
        "shapes, noise), texture (fractal noise, stripes, checks, or scikit-image's brick / grass / gravel "
        "photographs tiled, in random colours) or photo (crops of scikit-image's sample photographs and "
        "matplotlib's grace_hopper.jpg). Images of 300-500 x 300-375 px; each box bounds its article's visible "
        "pixels. Train scenes use the train split's articles and pictures, test scenes the test split's, so "
        "none is in both. Written in PASCAL VOC layout, each XML with its scene's <style>.",
    )
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--split", default="test", choices=["train", "test"], help="article split (default: test)")
    s.add_argument("--count", type=int, default=200, help="number of scenes (default: 200)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.add_argument(
        "--style",
        nargs="+",
        default=list(STYLES),
        choices=STYLES,
        help="background styles, used in turn (default: all three; name fewer to hold one out)",
    )
    s.add_argument("--root", help="folder with Fashion-MNIST's IDX files (default: as in training)")
    s.set_defaults(run=scenes)


def proposals(a: argparse.Namespace) -> None:
    """Region proposals over a detection dataset: boxes per image, recall at IoU 0.5, seconds per image."""
    from googlenet.detect.proposals import plot_recall, proposal_report

    results = proposal_report(
        data=detection_data(a), methods=a.method, multibox=a.multibox, tiles=a.tiles, progress=not a.json
    )
    if a.plot:
        plot_recall(results, a.plot)
    if a.json:
        print(json.dumps(results[a.method[0]] if len(a.method) == 1 else results))
        return
    for r in results.values():
        print(
            f"{r['method']}: {r['boxes_per_image']:.0f} boxes per image, recall at IoU 0.5 {100 * r['recall']:.1f}% "
            f"of {r['objects']} objects, {r['seconds_per_image']:.2f} s per image, {r['images']} images"
        )
        for style, part in r.get("styles", {}).items():
            print(f"  {style} scenes: recall {100 * part['recall']:.1f}% of {part['objects']} objects")
        for name, source in r.get("sources", {}).items():
            print(
                f"  from {name}: {source['boxes_per_image']:.0f} boxes per image, recall {100 * source['recall']:.1f}%"
            )


def _add_proposals(sub: Commands) -> None:
    from googlenet.detect.proposals import PROPOSERS

    s = sub.add_parser(
        "proposals",
        help="region proposals over a VOC-layout dataset: boxes per image, recall, seconds per image",
        description="Selective Search (OpenCV contrib) over every image: ss = R-CNN's fast recipe (HSV and Lab, "
        "k 50 and 100 with min size k, sigma 0.8, image 500 px wide, boxes under 20 px dropped), ss2x = the "
        "paper's superpixels twice as large (k 100 and 200), opencv_fast / opencv_quality = OpenCV's presets. "
        "Reports the recall of the ground-truth boxes at IoU >= 0.5. Results are cached per image.",
    )
    add_voc_options(s)
    s.add_argument(
        "--method",
        nargs="+",
        default=["ss2x"],
        choices=list(PROPOSERS),
        help="one or more methods: " + "; ".join(f"{m.name} = {m.help}" for m in PROPOSERS.values()),
    )
    s.add_argument("--multibox", metavar="CKPT", help="MultiBox weights (model.safetensors of train-multibox)")
    add_tiles_option(s)
    s.add_argument("--json", action="store_true", help="print one JSON object (per method when several)")
    s.add_argument("--plot", help="write a PNG of recall against proposals per image")
    s.set_defaults(run=proposals)


def _add_train_multibox(sub: Commands) -> None:
    t = sub.add_parser(
        "train-multibox",
        help="train MultiBox proposals (an Inception net that predicts K boxes and confidences)",
        description="Train MultiBox (Erhan et al. 2014) with the training loop of `googlenet train`: K boxes as "
        "offsets to K priors from k-means over the training boxes, K confidences, the matching loss "
        "(Hungarian assignment). Data: data.dataset voc, data.root a VOC-layout folder (googlenet data "
        "scenes). model.weights: a classification checkpoint to start the backbone from. Outputs as for "
        "`googlenet train`; model.safetensors holds the MultiBox weights.",
    )
    add_training_options(t, "YAML file (see configs/multibox_scenes.yaml)")

    t.set_defaults(run=lambda a: train(a, task="multibox"))


def _add_train_regions(sub: Commands) -> None:
    t = sub.add_parser(
        "train",
        help="fine-tune the Inception region classifier R-CNN style on proposal windows",
        description="Fine-tune a classification checkpoint (model.weights) into the region classifier of section "
        "8 with the training loop of `googlenet train`: the classes plus background; proposal windows "
        "(detect.proposals, cached per image) with IoU >= detect.fg_iou to an object take its class, the rest "
        "are background; each window is grown by detect.context pixels of context and warped to the input "
        "size; mini-batches hold detect.foreground object windows (R-CNN: 32 of 128). Evaluated after each "
        "epoch by window accuracy; `googlenet detect evaluate` gives the mAP. Outputs as for `googlenet train`.",
    )
    add_training_options(t, "YAML file (see configs/detect_scenes.yaml)")

    t.set_defaults(run=lambda a: train(a, task="regions"))


def detect_evaluate(a: argparse.Namespace) -> None:
    """mAP of the detector over a VOC-layout dataset, per-class AP, JSON and a precision-recall PNG."""
    from googlenet.detect.detector import evaluate_detector, plot_precision_recall

    record, results = evaluate_detector(detector_spec(a), detection_data(a), metric=a.metric, progress=not a.json)
    record["command"] = shlex.join(["googlenet", *sys.argv[1:]])
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "detection.json").write_text(json.dumps(record, indent=2) + "\n")
        plot_precision_recall(results, out / "precision_recall.png")
    if a.json:
        print(json.dumps(record))
        return
    for name, ap in record["ap"].items():
        print(f"{name:>14}: AP {100 * ap:5.1f}")
    for style, part in record.get("styles", {}).items():
        print(f"{style + ' scenes':>14}: mAP {100 * part['map']:5.1f}")
    print(
        f"mAP {100 * record['map']:.2f}% ({a.metric}) over {record['images']} images, {record['models']} model(s), "
        f"{record['proposals']} proposals ({record['proposals_per_image']:.0f} per image), "
        f"{record['seconds_per_image']:.2f} s per image"
    )


def _add_detect_evaluate(sub: Commands) -> None:
    from googlenet.detect.evaluation import METRICS

    e = sub.add_parser(
        "evaluate",
        help="detection mAP (ILSVRC metric by default) of a region classifier or an ensemble",
        description="Detect every image of a VOC-layout dataset (proposals cached per image, each scored by the "
        "region classifier(s), per-class NMS) and score with the ILSVRC metric (per-object IoU threshold "
        "min(0.5, wh/((w+10)(h+10)))) or PASCAL VOC's 2010+ / 2007 (11-point). Prints per-class AP and mAP.",
    )
    add_detector_options(e)
    add_voc_options(e)
    e.add_argument("--metric", default="ilsvrc", choices=METRICS, help="AP definition (default: ilsvrc)")
    e.add_argument("--out", help="folder for detection.json and precision_recall.png")
    e.add_argument("--json", action="store_true", help="print one JSON object (map, ap per class, timings)")
    e.set_defaults(run=detect_evaluate)


def fit_bbox(a: argparse.Namespace) -> None:
    """R-CNN's bounding-box regressors for a region classifier, written beside its weights."""
    from googlenet.detect.fitting import fit_bbox as fit_for

    report = fit_for(
        checkpoint=a.checkpoint,
        data=detection_data(a),
        proposals=a.proposals,
        iou=a.iou,
        max_windows=a.max_windows,
        progress=not a.json,
    )
    if a.json:
        print(json.dumps(report))
        return
    print(
        f"bounding-box regressors for {report['classes']} classes from {report['windows']} windows "
        f"(IoU >= {a.iou}, {report['proposals']}): lambda {report['lambda']:g}, held-out squared error "
        f"{report['heldout_error']:.4f} (unmoved boxes: {report['heldout_error_without']:.4f}); written to "
        f"{report['path']}"
    )


def _add_fit_bbox(sub: Commands) -> None:
    f = sub.add_parser(
        "fit-bbox",
        help="fit R-CNN's bounding-box regression for a region classifier (an extension)",
        description="Per class, a ridge regression from the region classifier's pooled features of a proposal "
        "to the offsets of the object it overlaps by IoU >= --iou (R-CNN: 0.6), lambda chosen on a held-out "
        "fifth. Writes CKPT's regressors beside it as NAME.bbox.safetensors; detect evaluate/predict use them "
        "with --bbox-regression.",
    )
    add_checkpoint_option(f, "region classifier weights (model.safetensors of `googlenet detect train`)", many=False)
    add_voc_options(f, split="train")
    f.add_argument("--proposals", help="proposal method (default: the one the classifier was trained on)")
    f.add_argument("--iou", type=float, default=0.6, help="lowest IoU of a proposal to its object (default: 0.6)")
    f.add_argument("--max-windows", type=int, default=20000, help="windows to fit on, drawn at random")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(run=fit_bbox)


def fit_svm(a: argparse.Namespace) -> None:
    """R-CNN's per-class SVMs for a region classifier, written beside its weights."""
    from googlenet.detect.fitting import fit_svm as fit_for

    report = fit_for(
        checkpoint=a.checkpoint,
        data=detection_data(a),
        proposals=a.proposals,
        images=a.images,
        c=a.c,
        rounds=a.rounds,
        device=a.device,
        progress=not a.json,
    )
    if a.json:
        print(json.dumps(report))
        return
    for name, part in report["classes"].items():
        print(
            f"{name:>14}: {part['positives']} objects, {part['negatives']} negative windows, {part['cache']} cached "
            f"after {part['rounds']} mining round(s), {part['hard_left']} still hard, "
            f"{part['positives_missed']} objects below the margin"
        )
    print(
        f"SVMs for {len(report['classes'])} classes from {report['positives']} objects and the "
        f"{report['proposal_windows']} {report['proposals']} proposals of {report['negative_images']} images; "
        f"written to {report['path']}"
    )


def _add_fit_svm(sub: Commands) -> None:
    f = sub.add_parser(
        "fit-svm",
        help="fit R-CNN's per-class linear SVMs on a region classifier's features, hard negatives mined",
        description="Per class, a linear SVM (squared hinge, C, positives weighted 2) on the region classifier's "
        "pooled features scaled to a mean norm of 20: positives every training image's objects of the class, "
        "negatives the proposals of --images images that overlap none of them by IoU 0.3, mined hard (those "
        "scoring above -1 join, those below -1.2 leave; --rounds times). Writes CKPT's SVMs beside it as "
        "NAME.svm.safetensors; detect evaluate/predict score with them with --svm.",
    )
    add_checkpoint_option(f, "region classifier weights (model.safetensors of `googlenet detect train`)", many=False)
    add_voc_options(f, split="train")
    f.add_argument("--proposals", help="proposal method (default: the one the classifier was trained on)")
    f.add_argument(
        "--images", type=int, default=400, help="images whose proposals are the negatives (0 = all; default: 400)"
    )
    f.add_argument("--c", type=float, default=1e-3, help="the SVMs' C (default: 0.001, R-CNN's)")
    f.add_argument("--rounds", type=int, default=3, help="hard-negative mining rounds (default: 3)")
    add_device_option(f, "device (default: auto)")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(run=fit_svm)


def detect_predict(a: argparse.Namespace) -> None:
    """Detections of each image as text or JSON; with --out, each image saved with its boxes drawn."""
    from googlenet.data.images import image_files
    from googlenet.detect.detector import detect_images

    split_images(a)
    images = [str(path) for path in image_files(a.images)]
    if not images:
        raise ValueError(f"no image files in {', '.join(a.images)}")
    records = detect_images(detector_spec(a), images=images, threshold=a.threshold, out=a.out)
    if a.json:
        print(json.dumps(records[0] if len(records) == 1 else records))
        return
    for record in records:
        print(f"{record['image']}: {len(record['detections'])} detections, {record['seconds']['total']:.2f} s")
        for d in record["detections"]:
            print(f"  {d['class']:>14} {d['score']:.3f}  box {d['box']}")


def _add_detect_predict(sub: Commands) -> None:
    p = sub.add_parser(
        "predict",
        help="detect objects in images: boxes, classes, scores; optionally the images with boxes drawn",
        description="Proposals, region classifier(s), per-class NMS on each IMAGE; prints the detections at or "
        "above --threshold and, with --out, saves each image as PNG with its boxes and labels drawn.",
    )
    add_detector_options(p)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders (their image files, recursively)")
    p.add_argument("--threshold", type=float, default=0.5, help="lowest score shown and drawn (default: 0.5)")
    p.add_argument("--out", help="folder for the images with their boxes drawn")
    p.add_argument("--json", action="store_true", help="print JSON (one object per image)")
    p.set_defaults(run=detect_predict)


def add_detect(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Detection as in section 8: region proposals (Selective Search, MultiBox), MultiBox training, "
        "the region classifier's fine-tuning, ILSVRC mAP and detection of new images."
    )
    sub = p.add_subparsers(title="detect commands", metavar="COMMAND", required=True)
    for add in (_add_proposals, _add_train_multibox, _add_train_regions, _add_detect_evaluate):
        add(sub)
    _add_detect_predict(sub)
    _add_fit_bbox(sub)
    _add_fit_svm(sub)
