"""The `googlenet` command: one entry point, each subcommand a plain function."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from googlenet.data.loaders import dataset_for
from googlenet.data.multicrop import CROP_COUNTS, CropSpec
from googlenet.export import FORMATS
from googlenet.model import VARIANTS, build_model, load_for_inference
from googlenet.train.checkpoint import RunStopped

CROPS_HELP = "crops per image: 1 centre, 2 centre and mirror, 10 TenCrop, 144 the paper's (default: 1)"


def summary(model: str, input_size: int, format: str, naive: bool, width: float) -> str:
    """Table 1 computed from the built model."""
    from googlenet.model.summary import render, table1

    if input_size < 32:
        raise ValueError(f"--input-size must be at least 32, not {input_size}")
    return render(table1(build_model(model, width=width, aux=True), input_size, naive=naive), format)


def _summary_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "summary",
        help="reproduce the paper's Table 1 from the model itself",
        description="Walk the built model's modules and print Table 1: type, patch size/stride, output "
        "size, depth, filter counts, weights and multiply-adds per row, beside the paper's printed figures. "
        "Rows marked * differ from the printed table (for the paper's model at 224: the table's slips).",
    )
    p.add_argument("--model", default="googlenet", choices=list(VARIANTS), help="variant (default: googlenet)")
    p.add_argument("--input-size", type=int, default=224, help="square input side in pixels, >= 32 (default: 224)")
    p.add_argument("--format", default="table", choices=["table", "markdown", "json"], help="output format")
    p.add_argument(
        "--naive",
        action="store_true",
        help="add the cost of the naive module (Figure 2a) at the same widths beside each inception row",
    )
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (1.0 = Table 1)")
    p.set_defaults(run=lambda a: print(summary(a.model, a.input_size, a.format, a.naive, a.width)))


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def train(config: str | None, out: str | None, resume: bool, overrides: dict[str, str], task: Any = None) -> None:
    """Train with the paper's recipe (`task`: classification by default); print the final metrics and where
    the outputs are."""
    from googlenet.train import config as train_config
    from googlenet.train.loop import CHECKPOINT, CONFIG, PLOT, WEIGHTS, Task
    from googlenet.train.loop import train as run_training

    if out is not None:
        overrides = {**overrides, "run.out": out}
    if config is None and resume and out is not None and (Path(out) / CONFIG).is_file():
        config = str(Path(out) / CONFIG)  # `--resume --out DIR` alone continues with the run's own config
    cfg = train_config.load(config, overrides)
    task = task or Task()
    results = run_training(cfg, resume=resume, task=task)
    where = cfg.run.out
    print(task.summary(results, cfg))
    print(f"checkpoint: {where}/{CHECKPOINT}\ninference weights: {where}/{WEIGHTS}\nplot: {where}/{PLOT}")


def _train_parser(commands: argparse._SubParsersAction) -> None:
    from googlenet.train import config as train_config

    p = commands.add_parser(
        "train",
        help="train GoogLeNet with the paper's recipe (one process, or many under torchrun)",
        description="Train with section 6's recipe: SGD with momentum, the learning rate decreased 4% every "
        "8 epochs, auxiliary losses weighted 0.3, Polyak averaging, random-sized crops, photometric "
        "distortions and random interpolation. Settings come from --config (YAML, sections as below), then "
        "from --section.field options, which override any field. Under `torchrun --nproc_per_node N` the "
        "same command trains data-parallel. Outputs in run.out: checkpoint.pt, model.safetensors (inference "
        "weights), metrics.jsonl, curves.png, config.yaml, results.json (and unreadable.jsonl, when image files "
        "could not be read and were skipped). SIGTERM or Ctrl-C: checkpoint, then stop (continue with --resume).",
    )
    _add_training_options(p, "YAML file with sections model, data, augment, optim, run (see configs/)")
    p.set_defaults(run=lambda a: train(a.config, a.out, a.resume, train_config.overrides_from(a)))


def _add_training_options(p: argparse.ArgumentParser, config_help: str) -> None:
    """--config, --out, --resume and one --section.field per config field: every command that trains."""
    from googlenet.train import config as train_config

    p.add_argument("--config", help=config_help)
    p.add_argument("--out", help="output folder (same as --run.out)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in the output folder (without --config: with that run's config.yaml)",
    )
    train_config.add_arguments(p)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return name


def evaluate(
    checkpoints: list[str],
    crops: int,
    pool: str,
    data: str,
    split: str,
    root: str | None,
    limit: int,
    batch_size: int,
    workers: int,
    device: str,
    as_json: bool,
    out: str | None,
    table3: bool,
    optimize: bool = True,
) -> None:
    """Top-1 / top-5 of one model or an ensemble with 1, 2, 10 or 144 crops; or, with table3, the paper's Table 3."""
    import json

    from googlenet.evaluate import multicrop
    from googlenet.evaluate import table3 as t3

    if limit < 0 or batch_size < 1 or workers < 0:
        raise ValueError("--limit and --workers must be >= 0 and --batch-size >= 1")
    models = [load_for_inference(c, optimize) for c in checkpoints]
    dataset = dataset_for(data, split, root)
    multicrop.check_classes(models, list(dataset.classes))
    options = dict(limit=limit, batch_size=batch_size, workers=workers)
    if table3:
        result = t3.table3(models, checkpoints, dataset, device=_device(device), **options)
        written = t3.write(result, out or "runs/table3")
        print(json.dumps(result) if as_json else t3.render(result) + "written: " + ", ".join(map(str, written)))
        return
    evaluator = multicrop.CropEnsemble(models, pool, _device(device))
    seconds = multicrop.run(evaluator, dataset, CropSpec.of(models, crops), **options)
    result = {
        **evaluator.evaluate(),
        "crops": crops,
        "pool": pool,
        "models": len(models),
        "images": sum(len(t) for t in evaluator.targets),
        "unreadable": min(limit or len(dataset), len(dataset)) - sum(len(t) for t in evaluator.targets),
        "per_model": [{"checkpoint": c, **evaluator.evaluate([i])} for i, c in enumerate(checkpoints)],
        "seconds": round(seconds, 2),
        "data": data if data == "fashion_mnist" else str(Path(data).resolve()),
        "split": split if data == "fashion_mnist" else None,
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        print(json.dumps(result))
    else:
        print(
            f"{result['models']} model(s) x {crops} crop(s) ({pool} over crops) on {result['images']} images: "
            f"top-1 {100 * result['top1']:.2f}%  top-5 error {100 * result['top5_error']:.2f}%  ({seconds:.0f} s)"
            + (f"; {result['unreadable']} unreadable image(s) skipped" if result["unreadable"] else "")
        )


def _evaluate_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate",
        help="top-1 / top-5 with 1, 2, 10 or 144 crops, of one model or an ensemble; the paper's Table 3",
        description="Test as in section 7: each image is cut into 1 (centre), 2 (centre and its mirror), "
        "10 (torchvision's TenCrop) or 144 "
        "crops (4 scales x 3 squares x (4 corners + centre + whole square) x 2 mirrors); the softmax "
        "probabilities are averaged over the crops and over all the given models (an ensemble). Prints top-1 "
        "accuracy and top-5 error; --json prints one JSON object (accuracies as fractions).",
    )
    p.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        metavar="CKPT",
        help="inference weights (.safetensors with metadata, or a training run's folder); several = an ensemble",
    )
    p.add_argument("--crops", type=int, default=1, choices=CROP_COUNTS, help=CROPS_HELP)
    p.add_argument(
        "--pool",
        default="mean",
        choices=["mean", "max"],
        help="combine crops by mean (the paper) or max (default: mean)",
    )
    p.add_argument(
        "--data",
        default="fashion_mnist",
        help="fashion_mnist, or an ImageFolder split folder (one subfolder per class) (default: fashion_mnist)",
    )
    p.add_argument("--split", default="test", help="Fashion-MNIST split: train or test (default: test)")
    p.add_argument("--root", help="folder with Fashion-MNIST's IDX files (default: as in training)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate the first N images only (0 = all)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch, each with all its crops (default: 32)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers that decode and crop (default: 1)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--out",
        help="write the result here: a JSON file; with --table3 a folder for table3.md/.json/.png "
        "(default there: runs/table3)",
    )
    p.add_argument(
        "--table3",
        action="store_true",
        help="the paper's Table 3: the best single model and the ensemble of all, each with 1, 10 and 144 crops",
    )
    _add_no_optimize_option(p)
    p.set_defaults(
        run=lambda a: evaluate(
            a.checkpoint,
            a.crops,
            a.pool,
            a.data,
            a.split,
            a.root,
            a.limit,
            a.batch_size,
            a.workers,
            a.device,
            a.json,
            a.out,
            a.table3,
            not a.no_optimize,
        )
    )


def _add_no_optimize_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-optimize",
        action="store_true",
        help="run the eager model as trained, not the inference model (BatchNorm folded, 1x1s fused, "
        "channels_last); for checking: the outputs are the same to float rounding",
    )


def predict(
    checkpoints: list[str],
    images: list[str],
    crops: int,
    topk: int,
    device: str,
    as_json: bool,
    optimize: bool = True,
) -> None:
    """Class names and probabilities for each image file."""
    import json

    from googlenet.evaluate import multicrop

    if topk < 1:
        raise ValueError("--topk must be at least 1")
    models = [load_for_inference(c, optimize) for c in checkpoints]
    results = multicrop.predict(models, images, crops, topk, _device(device))
    if as_json:
        print(json.dumps(results))
        return
    for result in results:
        print(result["image"])
        for p in result["predictions"]:
            print(f"  {100 * p['probability']:6.2f}%  {p['class']}")


def _predict_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "predict",
        help="classify image files: top classes and probabilities",
        description="Classify image files of any common format and mode (JPEG, PNG including grayscale, RGBA, "
        "palette and 16-bit, BMP, TIFF, WebP, ...) with one model or an ensemble, from 1, 2, 10 or 144 crops.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="CKPT",
        help="inference weights (.safetensors or a run's folder); repeat the option for an ensemble",
    )
    p.add_argument("--crops", type=int, default=1, choices=CROP_COUNTS, help=CROPS_HELP)
    p.add_argument("--topk", type=int, default=5, help="how many classes to show (default: 5)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--json", action="store_true", help="print a JSON list: image, predictions (class, probability)")
    _add_no_optimize_option(p)
    p.set_defaults(run=lambda a: predict(a.checkpoint, a.images, a.crops, a.topk, a.device, a.json, not a.no_optimize))


def export(
    checkpoint: str,
    format: str,
    int8: bool,
    out: str | None,
    data: str,
    split: str,
    root: str | None,
    check_images: int,
    calibration_images: int,
    calibration_data: str | None,
    tolerance: float,
    min_agreement: float,
    as_json: bool,
) -> None:
    """Write a checkpoint as an ONNX or TorchScript file (int8 ONNX with `int8`), checked against eager."""
    import json

    from googlenet import export as ex
    from googlenet.model import GoogLeNet

    if check_images < 1 or calibration_images < 1 or tolerance <= 0 or not 0 < min_agreement <= 1:
        raise ValueError(
            "--check-images and --calibration-images must be >= 1, --tolerance > 0, --min-agreement in (0, 1]"
        )
    model = load_for_inference(checkpoint, optimize=False)
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"{checkpoint} is already an export; pass the .safetensors weights")
    images = ex.sample_images(model.meta, data, split, root, check_images)
    calibration = None
    if int8:
        source = calibration_data or data
        calibration = ex.sample_images(
            model.meta, source, "train" if source == "fashion_mnist" else None, root, calibration_images
        )
    path = Path(out) if out else ex.default_path(checkpoint, format, int8)
    report = ex.export(model, format, path, images, calibration, tolerance, min_agreement)
    if as_json:
        print(json.dumps(report))
        return
    print(
        f"{path} ({report['bytes'] / 2**20:.1f} MiB, {format}{' int8' if int8 else ''}): against eager on "
        f"{report['images']} {data} images, largest logit difference {report['max_abs_diff']:.2e} "
        f"(relative {report['relative_diff']:.2e}), top-1 agreement {100 * report['top1_agreement']:.2f}%"
    )


def _export_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export",
        help="write weights as ONNX (onnxruntime) or TorchScript (torch.jit), optionally int8, checked against eager",
        description="Export the inference model (BatchNorm folded; for TorchScript also each Inception's 1x1 "
        "convolutions fused, which onnxruntime runs slower than the separate ones) as a "
        "file that runs without this package: ONNX for onnxruntime or TorchScript for torch.jit. The weights' "
        "metadata record (class names, mean/std, input size, ...) travels in the file (ONNX metadata_props or the "
        "TorchScript extra file, key/name googlenet). --int8 quantises the ONNX file with onnxruntime's static "
        "post-training quantisation, calibrated on real images. The file's logits are then compared with the eager "
        "model's on the first --check-images images of --data; an export that differs beyond the tolerance is "
        "deleted and the command fails.",
    )
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="weights (.safetensors or a run's folder)")
    p.add_argument("--format", default="onnx", choices=list(FORMATS), help="file format (default: onnx)")
    p.add_argument("--int8", action="store_true", help="int8 post-training quantisation (ONNX only)")
    p.add_argument(
        "--out", help="output file (default: beside the weights, model.onnx / model.int8.onnx / model.torchscript.pt)"
    )
    p.add_argument("--data", default="fashion_mnist", help="images to check on: fashion_mnist or an ImageFolder split")
    p.add_argument("--split", default="test", help="Fashion-MNIST split to check on (default: test)")
    p.add_argument("--root", help="folder with Fashion-MNIST's IDX files (default: as in training)")
    p.add_argument("--check-images", type=int, default=256, help="images compared with eager (default: 256)")
    p.add_argument(
        "--calibration-data",
        help="images that calibrate --int8 (default: Fashion-MNIST's train split, or the --data folder)",
    )
    p.add_argument("--calibration-images", type=int, default=512, help="calibration images (default: 512)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="fp32: largest logit difference allowed, relative to the largest logit (default: 1e-4)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.97,
        help="int8: smallest fraction of check images whose top-1 class must match eager's (default: 0.97)",
    )
    p.add_argument("--json", action="store_true", help="print the check's report as one JSON object")
    p.set_defaults(
        run=lambda a: export(
            a.checkpoint,
            a.format,
            a.int8,
            a.out,
            a.data,
            a.split,
            a.root,
            a.check_images,
            a.calibration_images,
            a.calibration_data,
            a.tolerance,
            a.min_agreement,
            a.json,
        )
    )


def scenes(out: str, split: str, count: int, seed: int, root: str | None) -> None:
    """Write detection scenes of Fashion-MNIST articles in VOC layout."""
    from googlenet.data.scenes import write_scenes

    folder = write_scenes(out, split, count, seed, root)
    print(f"{count} {split} scenes in {folder} (JPEGImages/, Annotations/, ImageSets/Main/{split}.txt, classes.txt)")


def _data_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "data", help="make datasets: detection scenes", description="Make datasets: detection scenes of real objects."
    )
    sub = p.add_subparsers(title="data commands", metavar="COMMAND", required=True)
    s = sub.add_parser(
        "scenes",
        help="detection scenes of real Fashion-MNIST articles on cluttered backgrounds (VOC XML + JPEG)",
        description="Paste 1-6 Fashion-MNIST articles per scene (about 20 px up to half the image, aspect "
        "jitter, some overlapping) onto cluttered backgrounds (gradients, textures, shapes, noise); images of "
        "300-500 x 300-375 px; tight boxes from the articles' pixels. Train scenes use the train split's "
        "articles, test scenes the test split's, so no article is in both. Written in PASCAL VOC layout.",
    )
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--split", default="test", choices=["train", "test"], help="article split (default: test)")
    s.add_argument("--count", type=int, default=200, help="number of scenes (default: 200)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.add_argument("--root", help="folder with Fashion-MNIST's IDX files (default: as in training)")
    s.set_defaults(run=lambda a: scenes(a.out, a.split, a.count, a.seed, a.root))


def proposals(
    data: str,
    split: str,
    methods: list[str],
    limit: int,
    workers: int,
    cache: str | None,
    as_json: bool,
    plot: str | None,
    multibox: str | None = None,
    tiles: int | None = None,
) -> None:
    """Region proposals over a detection dataset: boxes per image, recall at IoU 0.5, seconds per image."""
    import json

    from googlenet.data.detection import VOCDetection
    from googlenet.detect import proposals as props

    if limit < 0 or workers < 1 or (tiles is not None and tiles < 1):
        raise ValueError("--limit must be >= 0, --workers >= 1 and --tiles >= 1")
    if {"multibox", "paper"} & set(methods) and not multibox:
        raise ValueError("--method multibox and paper need --multibox CKPT (from googlenet detect train-multibox)")
    dataset = VOCDetection(data, split).limit(limit)
    found: dict[str, tuple[list, list]] = {}
    for method in methods:
        for source in props.sources_of(method):
            if source not in found:
                found.update(props.dataset_proposals(dataset, source, cache, workers, multibox, not as_json, tiles))
    results = {}
    for method in methods:
        parts = {m: found[m] for m in props.sources_of(method)}
        boxes, seconds = props.joined(parts)
        results[method] = {"method": method, "images": len(dataset), **props.coverage(boxes, dataset)}
        results[method]["seconds_per_image"] = sum(seconds) / max(len(seconds), 1)
        if len(parts) > 1:
            results[method]["sources"] = {m: props.coverage(p[0], dataset) for m, p in parts.items()}
    if plot:
        props.plot_recall(results, plot)
    if as_json:
        print(json.dumps(results[methods[0]] if len(methods) == 1 else results))
        return
    for r in results.values():
        print(
            f"{r['method']}: {r['boxes_per_image']:.0f} boxes per image, recall at IoU 0.5 {100 * r['recall']:.1f}% "
            f"of {r['objects']} objects, {r['seconds_per_image']:.2f} s per image, {r['images']} images"
        )
        for name, source in r.get("sources", {}).items():
            print(
                f"  from {name}: {source['boxes_per_image']:.0f} boxes per image, recall {100 * source['recall']:.1f}%"
            )


def _add_voc_options(p: argparse.ArgumentParser, split: str = "test") -> None:
    """--data, --split, --limit, --workers, --cache: the options of every command that reads a detection dataset."""
    p.add_argument("--data", required=True, help="dataset folder in VOC layout (Annotations/, JPEGImages/, ...)")
    p.add_argument("--split", default=split, help=f"image list ImageSets/Main/SPLIT.txt (default: {split})")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N images only (0 = all)")
    p.add_argument("--workers", type=int, default=1, help="Selective Search worker processes (default: 1)")
    p.add_argument("--cache", help="proposal cache folder (default: DATA/proposals)")


def _detect_parser(commands: argparse._SubParsersAction) -> None:
    from googlenet.detect.proposals import METHODS

    p = commands.add_parser(
        "detect",
        help="detection (section 8): proposals, MultiBox, the region classifier, mAP, drawing boxes",
        description="Detection as in section 8: region proposals (Selective Search, MultiBox), MultiBox training, "
        "the region classifier's fine-tuning, ILSVRC mAP and detection of new images.",
    )
    sub = p.add_subparsers(title="detect commands", metavar="COMMAND", required=True)
    s = sub.add_parser(
        "proposals",
        help="region proposals over a VOC-layout dataset: boxes per image, recall, seconds per image",
        description="Selective Search (OpenCV contrib) over every image: ss = R-CNN's fast recipe (HSV and Lab, "
        "k 50 and 100 with min size k, sigma 0.8, image 500 px wide, boxes under 20 px dropped), ss2x = the "
        "paper's superpixels twice as large (k 100 and 200), opencv_fast / opencv_quality = OpenCV's presets. "
        "Reports the recall of the ground-truth boxes at IoU >= 0.5. Results are cached per image.",
    )
    _add_voc_options(s)
    s.add_argument(
        "--method",
        nargs="+",
        default=["ss2x"],
        choices=[*METHODS, "multibox", "paper"],
        help="one or more methods; multibox = the top boxes of a trained MultiBox net, paper = ss2x + multibox",
    )
    s.add_argument("--multibox", metavar="CKPT", help="MultiBox weights (model.safetensors of train-multibox)")
    _add_tiles_option(s)
    s.add_argument("--json", action="store_true", help="print one JSON object (per method when several)")
    s.add_argument("--plot", help="write a PNG of recall against proposals per image")
    s.set_defaults(
        run=lambda a: proposals(
            a.data, a.split, a.method, a.limit, a.workers, a.cache, a.json, a.plot, a.multibox, a.tiles
        )
    )
    _train_multibox_parser(sub)
    _detect_train_parser(sub)
    _detect_evaluate_parser(sub)
    _detect_predict_parser(sub)
    _fit_bbox_parser(sub)


def _add_tiles_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tiles",
        type=int,
        metavar="T",
        help="MultiBox on the whole image plus a T x T grid of overlapping crops (3: nine half-size crops, for "
        "small objects); default: the model's multibox.tiles",
    )


def _detect_train_parser(sub: argparse._SubParsersAction) -> None:
    from googlenet.train import config as train_config

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
    _add_training_options(t, "YAML file (see configs/detect_scenes.yaml)")

    def run(a: argparse.Namespace) -> None:
        from googlenet.detect.classifier import RegionTask

        train(a.config, a.out, a.resume, train_config.overrides_from(a), task=RegionTask())

    t.set_defaults(run=run)


def _add_detector_options(p: argparse.ArgumentParser, repeat: bool = False) -> None:
    """Options of the commands that detect; `repeat`: --checkpoint takes one file per use (before positionals)."""
    many = dict(action="append") if repeat else dict(nargs="+")
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT",
        help="region classifier weights (model.safetensors of `googlenet detect train`); several = an ensemble "
        f"that averages their softmax{' (repeat the option)' if repeat else ''}",
        **many,
    )
    p.add_argument(
        "--proposals",
        choices=["ss", "ss2x", "opencv_fast", "opencv_quality", "paper"],
        help="proposal method (default: paper with --multibox, else ss2x)",
    )
    p.add_argument("--multibox", metavar="CKPT", help="MultiBox weights, for the paper's proposals (ss2x + MultiBox)")
    _add_tiles_option(p)
    p.add_argument("--nms", type=float, default=0.3, help="per-class NMS IoU (paper/R-CNN: 0.3)")
    p.add_argument("--max-detections", type=int, default=100, help="detections kept per image (default: 100)")
    p.add_argument(
        "--bbox-regression",
        action="store_true",
        help="move each detection by R-CNN's class-specific box regression (an extension; the paper had none; "
        "fit it first with `googlenet detect fit-bbox`)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    _add_no_optimize_option(p)


def _detector(a: argparse.Namespace):
    from googlenet.detect.detector import Detector, RegionEnsemble
    from googlenet.detect.proposals import Proposer

    if not 0 < a.nms <= 1 or a.max_detections < 1:
        raise ValueError("--nms must be in (0, 1] and --max-detections >= 1")
    method = a.proposals or ("paper" if a.multibox else "ss2x")
    ensemble = RegionEnsemble.load(a.checkpoint, _device(a.device), a.bbox_regression, not a.no_optimize)
    return Detector(ensemble, Proposer(method, a.multibox, a.tiles), a.nms, a.max_detections), method


def detect_evaluate(a: argparse.Namespace) -> None:
    """mAP of the detector over a VOC-layout dataset, per-class AP, JSON and a precision-recall PNG."""
    import json

    from googlenet.data.detection import VOCDetection
    from googlenet.detect.detector import evaluate_dataset, plot_precision_recall
    from googlenet.detect.proposals import dataset_proposals, joined

    if a.limit < 0 or a.workers < 1:
        raise ValueError("--limit must be >= 0 and --workers >= 1")
    detector, method = _detector(a)
    data = VOCDetection(a.data, a.split).limit(a.limit)
    started = time.perf_counter()
    boxes, seconds = joined(dataset_proposals(data, method, a.cache, a.workers, a.multibox, not a.json, a.tiles))
    results, found = evaluate_dataset(detector, data, boxes, a.metric, progress=not a.json)
    classify = [d.seconds["total"] for d in found]
    record = {
        "map": results["map"],
        "ap": results["ap"],
        "metric": a.metric,
        "images": len(data),
        "proposals": method,
        "proposals_per_image": sum(len(b) for b in boxes) / max(len(boxes), 1),
        "models": len(a.checkpoint),
        "bbox_regression": a.bbox_regression,
        "seconds_per_image": (sum(seconds) + sum(classify)) / max(len(data), 1),
        "classify_seconds_per_image": sum(classify) / max(len(data), 1),
        "proposal_seconds_per_image": sum(seconds) / max(len(data), 1),
        "wall_seconds": time.perf_counter() - started,
        "checkpoints": a.checkpoint,
        "command": shlex.join(["googlenet", *sys.argv[1:]]),
    }
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
    print(
        f"mAP {100 * record['map']:.2f}% ({a.metric}) over {len(data)} images, {len(a.checkpoint)} model(s), "
        f"{method} proposals ({record['proposals_per_image']:.0f} per image), "
        f"{record['seconds_per_image']:.2f} s per image"
    )


def _detect_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    from googlenet.detect.evaluation import METRICS

    e = sub.add_parser(
        "evaluate",
        help="detection mAP (ILSVRC metric by default) of a region classifier or an ensemble",
        description="Detect every image of a VOC-layout dataset (proposals cached per image, each scored by the "
        "region classifier(s), per-class NMS) and score with the ILSVRC metric (per-object IoU threshold "
        "min(0.5, wh/((w+10)(h+10)))) or PASCAL VOC's 2010+ / 2007 (11-point). Prints per-class AP and mAP.",
    )
    _add_detector_options(e)
    _add_voc_options(e)
    e.add_argument("--metric", default="ilsvrc", choices=METRICS, help="AP definition (default: ilsvrc)")
    e.add_argument("--out", help="folder for detection.json and precision_recall.png")
    e.add_argument("--json", action="store_true", help="print one JSON object (map, ap per class, timings)")
    e.set_defaults(run=detect_evaluate)


def fit_bbox(a: argparse.Namespace) -> None:
    """R-CNN's bounding-box regressors for a region classifier, written beside its weights."""
    import json

    from googlenet.data.detection import VOCDetection
    from googlenet.detect import bbox
    from googlenet.detect.detector import load_regions
    from googlenet.detect.proposals import dataset_proposals, joined

    if a.limit < 0 or a.max_windows < 1 or not 0 < a.iou < 1:
        raise ValueError("--limit must be >= 0, --max-windows >= 1 and --iou in (0, 1)")
    model = load_regions(a.checkpoint)
    method = a.proposals or model.meta.head.proposals
    data = VOCDetection(a.data, a.split).limit(a.limit)
    boxes, _ = joined(dataset_proposals(data, method, a.cache, a.workers, None, not a.json))
    x, y, classes = bbox.collect(model, data, boxes, a.iou, a.max_windows, progress=not a.json)
    weights, report = bbox.fit(x, y, classes, model.meta.num_classes - 1)
    path = bbox.save(weights, bbox.regression_path(a.checkpoint), report)
    report = {**report, "path": str(path), "proposals": method, "images": len(data)}
    if a.json:
        print(json.dumps(report))
        return
    print(
        f"bounding-box regressors for {model.meta.num_classes - 1} classes from {report['windows']} windows "
        f"(IoU >= {a.iou}, {method}): lambda {report['lambda']:g}, held-out squared error "
        f"{report['heldout_error']:.4f} (unmoved boxes: {report['heldout_error_without']:.4f}); written to {path}"
    )


def _fit_bbox_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fit-bbox",
        help="fit R-CNN's bounding-box regression for a region classifier (an extension)",
        description="Per class, a ridge regression from the region classifier's pooled features of a proposal "
        "to the offsets of the object it overlaps by IoU >= --iou (R-CNN: 0.6), lambda chosen on a held-out "
        "fifth. Writes CKPT's regressors beside it as NAME.bbox.safetensors; detect evaluate/predict use them "
        "with --bbox-regression.",
    )
    f.add_argument("--checkpoint", required=True, metavar="CKPT", help="region classifier weights")
    _add_voc_options(f, split="train")
    f.add_argument("--proposals", help="proposal method (default: the one the classifier was trained on)")
    f.add_argument("--iou", type=float, default=0.6, help="lowest IoU of a proposal to its object (default: 0.6)")
    f.add_argument("--max-windows", type=int, default=20000, help="windows to fit on, drawn at random")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(run=fit_bbox)


def detect_predict(a: argparse.Namespace) -> None:
    """Detections of each image as text or JSON; with --out, each image saved with its boxes drawn."""
    import json

    from googlenet.data.images import load_image
    from googlenet.detect.detector import draw

    if not 0 <= a.threshold <= 1:
        raise ValueError("--threshold must be in [0, 1]")
    for path in a.images:
        if not Path(path).is_file():
            raise FileNotFoundError(f"image not found: {path}")
    detector, _ = _detector(a)
    records = []
    for path in a.images:
        image = load_image(path)  # decoded once: for the proposals, the classifier and the drawing
        found = detector.detect(image)
        kept = found.above(a.threshold)
        record = {"image": path, "detections": kept.to_json(detector.classes), "seconds": found.seconds}
        if a.out:
            record["drawn"] = str(draw(image, kept, detector.classes, Path(a.out) / (Path(path).stem + ".png")))
        records.append(record)
        if not a.json:
            print(f"{path}: {len(record['detections'])} detections, {found.seconds['total']:.2f} s")
            for d in record["detections"]:
                print(f"  {d['class']:>14} {d['score']:.3f}  box {d['box']}")
    if a.json:
        print(json.dumps(records[0] if len(records) == 1 else records))


def _detect_predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="detect objects in images: boxes, classes, scores; optionally the images with boxes drawn",
        description="Proposals, region classifier(s), per-class NMS on each IMAGE; prints the detections at or "
        "above --threshold and, with --out, saves each image as PNG with its boxes and labels drawn.",
    )
    _add_detector_options(p, repeat=True)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--threshold", type=float, default=0.5, help="lowest score shown and drawn (default: 0.5)")
    p.add_argument("--out", help="folder for the images with their boxes drawn")
    p.add_argument("--json", action="store_true", help="print JSON (one object per image)")
    p.set_defaults(run=detect_predict)


def _train_multibox_parser(sub: argparse._SubParsersAction) -> None:
    from googlenet.train import config as train_config

    t = sub.add_parser(
        "train-multibox",
        help="train MultiBox proposals (an Inception net that predicts K boxes and confidences)",
        description="Train MultiBox (Erhan et al. 2014) with the training loop of `googlenet train`: K boxes as "
        "offsets to K priors from k-means over the training boxes, K confidences, the matching loss "
        "(Hungarian assignment). Data: data.dataset voc, data.root a VOC-layout folder (googlenet data "
        "scenes). model.weights: a classification checkpoint to start the backbone from. Outputs as for "
        "`googlenet train`; model.safetensors holds the MultiBox weights.",
    )
    _add_training_options(t, "YAML file (see configs/multibox_scenes.yaml)")

    def run(a: argparse.Namespace) -> None:
        from googlenet.detect.multibox_training import MultiBoxTask

        train(a.config, a.out, a.resume, train_config.overrides_from(a), task=MultiBoxTask())

    t.set_defaults(run=run)


PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _summary_parser,
    _train_parser,
    _evaluate_parser,
    _predict_parser,
    _export_parser,
    _data_parser,
    _detect_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="googlenet",
        description='GoogLeNet as in "Going deeper with convolutions" (Szegedy et al., 2014). '
        "Run `googlenet COMMAND --help` for each command's options.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in PARSERS:
        add(commands)
    return parser


def _one_line(err: BaseException) -> str:
    """An error's message on one line. One raised in a DataLoader worker comes wrapped with the worker's
    traceback, whose last line holds the original message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].split(": ", 1)[-1]
    return " ".join(lines) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input ends in one line on stderr and exit code 2, never a traceback. A training run
    that stops on purpose (a signal, non-finite losses, too much unreadable data) says why in one line."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except RunStopped as err:
        print(f"googlenet: {_one_line(err)}", file=sys.stderr)
        return err.code
    except (ValueError, OSError) as err:  # OSError: missing, unreadable or unwritable files, a full disk
        print(f"googlenet: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("googlenet: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
