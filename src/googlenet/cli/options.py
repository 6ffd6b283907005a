"""Options that several test-time commands share, each written once: --device, --no-optimize, the detection
dataset's and the detector's."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from googlenet.forms import CHECKPOINT_FORMS, PUBLISHED_NAMES, WEIGHT_SUFFIXES

CROPS_HELP = "crops per image: 1 centre, 2 centre and mirror, 10 TenCrop, 144 the paper's (default: 1)"

Commands = Any  # argparse's subparsers action (argparse._SubParsersAction, a private name)


WEIGHTS_HELP = f"weights: {CHECKPOINT_FORMS}; several = an ensemble (--checkpoint A B, or the option repeated)"


def add_checkpoint_option(p: argparse.ArgumentParser, help: str = WEIGHTS_HELP, many: bool = True) -> None:
    """--checkpoint, the same in every command: one or more files (`many`), given at once or the option repeated."""
    options: dict[str, Any] = dict(nargs="+", action="extend") if many else {}
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help=help, **options)


def split_images(a: argparse.Namespace) -> None:
    """The image files that followed --checkpoint's weights (`--checkpoint A B photo.jpg`): weights are files
    ending as weights or exported files do, published names, the first folder and training runs' folders (with
    their weights file); the first other path and those after it are images, folders among them standing for the
    image files under them (`image_files`)."""
    from googlenet.model.exported import exported_suffixes
    from googlenet.model.weights import RUN_WEIGHTS

    suffixes = (*WEIGHT_SUFFIXES, *exported_suffixes())
    for k, path in enumerate(a.checkpoint):
        run = Path(path).is_dir() and (k == 0 or (Path(path) / RUN_WEIGHTS).is_file())
        if not (run or path.endswith(suffixes) or path in PUBLISHED_NAMES):
            a.checkpoint, a.images = a.checkpoint[:k], [*a.checkpoint[k:], *a.images]
            break
    if not a.checkpoint:
        first = a.images[0]
        if not Path(first).exists():
            raise FileNotFoundError(f"--checkpoint {first}: not found (weights are {CHECKPOINT_FORMS})")
        raise ValueError(f"--checkpoint {first} is no weights (weights are {CHECKPOINT_FORMS})")
    if not a.images:
        raise ValueError("no image files given (image files or folders after the weights)")


def add_device_option(p: argparse.ArgumentParser, help: str = "default: cuda if available") -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help=help)


def add_no_optimize_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-optimize",
        action="store_true",
        help="run the eager model as trained, not the inference model (BatchNorm folded, 1x1s fused, "
        "channels_last); for checking: the outputs are the same to float rounding",
    )


def add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="the inference model's precision: bf16 is fast on CUDA and on CPUs with AVX512-BF16 or AMX, "
        "emulated (slow) elsewhere; its agreement with fp32 in docs/inference.md (default: fp32)",
    )


def add_voc_options(p: argparse.ArgumentParser, split: str = "test") -> None:
    """--data, --split, --limit, --workers, --cache: the options of every command that reads a detection dataset."""
    p.add_argument("--data", required=True, help="dataset folder in VOC layout (Annotations/, JPEGImages/, ...)")
    p.add_argument("--split", default=split, help=f"image list ImageSets/Main/SPLIT.txt (default: {split})")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N images only (0 = all)")
    p.add_argument("--workers", type=int, default=1, help="Selective Search worker processes (default: 1)")
    p.add_argument("--cache", help="proposal cache folder (default: DATA/proposals)")


def add_tiles_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tiles",
        type=int,
        metavar="T",
        help="MultiBox on the whole image plus a T x T grid of overlapping crops (3: nine half-size crops, for "
        "small objects); default: the model's multibox.tiles",
    )


def add_detector_options(p: argparse.ArgumentParser) -> None:
    """Options of the commands that detect."""
    from googlenet.detect.proposals import PROPOSERS

    add_checkpoint_option(
        p,
        "region classifier weights (model.safetensors of `googlenet detect train`); several = an ensemble that "
        "averages their softmax (--checkpoint A B, or the option repeated)",
    )
    p.add_argument(
        "--proposals",
        choices=list(PROPOSERS),
        help="proposal method (default: paper with --multibox, else ss2x): "
        + "; ".join(f"{m.name} = {m.help}" for m in PROPOSERS.values()),
    )
    p.add_argument("--multibox", metavar="CKPT", help="MultiBox weights, for the paper's proposals (ss2x + MultiBox)")
    add_tiles_option(p)
    p.add_argument("--nms", type=float, default=0.3, help="per-class NMS IoU (paper/R-CNN: 0.3)")
    p.add_argument("--max-detections", type=int, default=100, help="detections kept per image (default: 100)")
    p.add_argument(
        "--bbox-regression",
        action="store_true",
        help="move each detection by R-CNN's class-specific box regression (an extension; the paper had none; "
        "fit it first with `googlenet detect fit-bbox`)",
    )
    p.add_argument(
        "--svm",
        action="store_true",
        help="score windows by R-CNN's per-class linear SVMs on the classifier's features instead of its softmax "
        "(fit them first with `googlenet detect fit-svm`)",
    )
    p.add_argument(
        "--flip",
        action="store_true",
        help="score each window and its mirror image and average the two (the paper's mirrored test crops, "
        "section 7; twice the classification time)",
    )
    add_device_option(p, "device (default: auto)")
    add_no_optimize_option(p)


def detector_spec(a: argparse.Namespace) -> Any:
    """The `DetectorSpec` the options that `add_detector_options` added describe."""
    from googlenet.detect.detector import DetectorSpec

    return DetectorSpec(
        checkpoints=tuple(a.checkpoint),
        proposals=a.proposals,
        multibox=a.multibox,
        tiles=a.tiles,
        nms=a.nms,
        max_detections=a.max_detections,
        bbox_regression=a.bbox_regression,
        svm=a.svm,
        flip=a.flip,
        device=a.device,
        optimize=not a.no_optimize,
    )


def detection_data(a: argparse.Namespace) -> Any:
    """The `DetectionData` the options that `add_voc_options` added describe."""
    from googlenet.detect.proposals import DetectionData

    return DetectionData(root=a.data, split=a.split, limit=a.limit, workers=a.workers, cache=a.cache)


def answer(results: list[dict], as_json: bool, lines: Callable[[dict], list[str]]) -> int:
    """Print per-file results: those answered as one JSON list or each as its `lines`, then each with an "error"
    (a file that could not be read) as one line on stderr. The exit status: 1 if any failed, else 0."""
    answered = [result for result in results if "error" not in result]
    if as_json:
        print(json.dumps(answered))
    else:
        for result in answered:
            print("\n".join(lines(result)))
    failed = [result for result in results if "error" in result]
    for result in failed:
        print(f"googlenet: error: {result['error']}", file=sys.stderr)
    return 1 if failed else 0
