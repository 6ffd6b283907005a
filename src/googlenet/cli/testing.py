"""Testing (section 7): `googlenet evaluate` (1, 2, 10 or 144 crops, ensembles, Table 3) and `googlenet predict`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from googlenet.cli.options import (
    CROPS_HELP,
    add_checkpoint_option,
    add_device_option,
    add_no_optimize_option,
    add_precision_option,
    answer,
    split_images,
)


def evaluate(a: argparse.Namespace) -> None:
    """Top-1 / top-5 of one model or an ensemble with 1, 2, 10 or 144 crops; or, with --table3, the paper's
    Table 3."""
    from googlenet.evaluate import EvaluationSpec, table3
    from googlenet.evaluate import evaluate as run_evaluation

    spec = EvaluationSpec(
        checkpoints=tuple(a.checkpoint),
        crops=a.crops,
        pool=a.pool,
        data=a.data,
        split=a.split,
        root=a.root,
        limit=a.limit,
        batch_size=a.batch_size,
        workers=a.workers,
        device=a.device,
        optimize=not a.no_optimize,
        precision=a.precision,
        table3=a.table3,
    )
    if a.table3:
        result = run_evaluation(spec)
        written = table3.write(result, a.out or "runs/table3")
        print(json.dumps(result) if a.json else table3.render(result) + "written: " + ", ".join(map(str, written)))
        return
    result = run_evaluation(spec)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    if a.json:
        print(json.dumps(result))
        return
    print(
        f"{result['models']} model(s) x {a.crops} crop(s) ({a.pool} over crops) on {result['images']} images: "
        f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%  "
        f"({result['seconds']:.0f} s)"
        + (f"; {result['unreadable']} unreadable image(s) skipped" if result["unreadable"] else "")
    )


def add_evaluate(p: argparse.ArgumentParser) -> None:
    from googlenet.data.multicrop import CROP_COUNTS

    p.description = (
        "Test as in section 7: each image is cut into 1 (centre), 2 (centre and its mirror), "
        "10 (torchvision's TenCrop) or 144 "
        "crops (4 scales x 3 squares x (4 corners + centre + whole square) x 2 mirrors); the softmax "
        "probabilities are averaged over the crops and over all the given models (an ensemble). Prints top-1 "
        "and top-5 accuracy; --json prints one JSON object (accuracies and errors as fractions)."
    )
    add_checkpoint_option(p)
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
        help="fashion_mnist, or an ImageFolder split folder (one subfolder per class: the class name as a folder "
        "can spell it, T-shirt_top or 0_T-shirt_top, or ImageNet's wnids) (default: fashion_mnist)",
    )
    p.add_argument("--split", default="test", help="Fashion-MNIST split: train or test (default: test)")
    p.add_argument("--root", help="folder with Fashion-MNIST's IDX files (default: as in training)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="evaluate the first N images only (0 = all)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch, each with all its crops (default: 32)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers that decode and crop (default: 1)")
    add_device_option(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--out",
        help="folder to write the result in: evaluation.json; with --table3 table3.md/.json/.png "
        "(default there: runs/table3)",
    )
    p.add_argument(
        "--table3",
        action="store_true",
        help="the paper's Table 3: the best single model and the ensemble of all, each with 1, 10 and 144 crops",
    )
    add_no_optimize_option(p)
    add_precision_option(p)
    p.set_defaults(run=evaluate)


def predict(a: argparse.Namespace) -> int:
    """Class names and probabilities for each image file (folders: the image files under them); a file that
    cannot be read is named on stderr and the others answered, and the exit status is then 1."""
    from googlenet.evaluate.multicrop import predict as classify

    split_images(a)
    results = classify(
        checkpoints=a.checkpoint,
        images=a.images,
        crops=a.crops,
        topk=a.topk,
        device=a.device,
        optimize=not a.no_optimize,
        precision=a.precision,
    )
    return answer(results, a.json, _prediction_lines)


def _prediction_lines(result: dict) -> list[str]:
    return [result["image"], *(f"  {100 * p['probability']:6.2f}%  {p['class']}" for p in result["predictions"])]


def add_predict(p: argparse.ArgumentParser) -> None:
    from googlenet.data.multicrop import CROP_COUNTS

    p.description = (
        "Classify image files of any common format and mode (JPEG, PNG including grayscale, RGBA, "
        "palette and 16-bit, BMP, TIFF, WebP, ...) with one model or an ensemble, from 1, 2, 10 or 144 crops."
    )
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files or folders (their image files, recursively); also after --checkpoint's weights",
    )
    add_checkpoint_option(p)
    p.add_argument("--crops", type=int, default=1, choices=CROP_COUNTS, help=CROPS_HELP)
    p.add_argument("--top-k", "--topk", dest="topk", type=int, default=5, help="how many classes to show (default: 5)")
    add_device_option(p)
    p.add_argument("--json", action="store_true", help="print a JSON list: image, predictions (class, probability)")
    add_no_optimize_option(p)
    add_precision_option(p)
    p.set_defaults(run=predict)
