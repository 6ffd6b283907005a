"""The lower precisions against fp32 on trained weights: the inference model in bfloat16 and the int8 ONNX export
(`googlenet export --int8`, onnxruntime), each against the fp32 inference model on a whole test set: top-1 of
each, the top-1 loss in points, the fraction of images whose top-1 class agrees with fp32's, and the logits'
difference (largest and mean absolute, and relative to the largest fp32 logit).

    googlenet train --config configs/fashion_mnist_paper.yaml            # the paper's network on the main job
    python benchmarks/precision.py --checkpoint runs/fashion_mnist_paper # then this (a few minutes here)

bfloat16 runs at speed on CUDA and on CPUs with AVX512-BF16 or AMX; elsewhere PyTorch emulates it (slowly, with
the same numbers). The int8 file is written as `googlenet export --int8` writes it (calibrated on 512 images of
Fashion-MNIST's train split) unless --int8-file names one already written. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from googlenet.data.loaders import dataset_for
from googlenet.data.transforms import transforms_for
from googlenet.export import ExportSpec, export_checkpoint
from googlenet.model import load_for_inference


def logits(model, images: list, batch: int = 256) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(torch.stack(images[i : i + batch])).float() for i in range(0, len(images), batch)])


def compare(reference: torch.Tensor, other: torch.Tensor, targets: torch.Tensor) -> dict:
    """`other`'s top-1, its top-1 loss against `reference` in points, agreement, logit differences."""
    diff = (other - reference).abs()
    top1 = float((other.argmax(1) == targets).float().mean())
    top1_reference = float((reference.argmax(1) == targets).float().mean())
    return {
        "top1": round(100 * top1, 2),
        "top1_loss_points": round(100 * (top1_reference - top1), 2),
        "top1_agreement": round(float((other.argmax(1) == reference.argmax(1)).float().mean()), 4),
        "logit_diff_max": round(float(diff.max()), 5),
        "logit_diff_mean": round(float(diff.mean()), 6),
        "logit_diff_relative": round(float(diff.max() / reference.abs().max()), 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="trained weights: a .safetensors file or a run's folder")
    parser.add_argument("--root", help="Fashion-MNIST's folder (default: as in training)")
    parser.add_argument("--limit", type=int, default=0, help="the test set's first images only (0: all)")
    parser.add_argument("--int8-file", help="an int8 .onnx export of the checkpoint (default: written here)")
    args = parser.parse_args()
    fp32 = load_for_inference(args.checkpoint)
    meta = fp32.meta
    data = dataset_for("fashion_mnist", "test", args.root, meta.class_names, meta.class_ids)
    count = min(args.limit, len(data)) if args.limit else len(data)
    prepare = transforms_for(meta)
    samples = [data[i] for i in range(count)]
    images, targets = [prepare(image) for image, _ in samples], torch.tensor([label for _, label in samples])
    reference = logits(fp32, images)
    report = {
        "command": "python benchmarks/precision.py --checkpoint " + args.checkpoint,
        "images": count,
        "fp32": {"top1": round(100 * float((reference.argmax(1) == targets).float().mean()), 2)},
        "bf16_cpu_kernels": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "bf16": compare(reference, logits(load_for_inference(args.checkpoint, precision="bf16"), images), targets),
    }
    with tempfile.TemporaryDirectory() as folder:
        int8 = args.int8_file or str(Path(folder) / "model.int8.onnx")
        if not args.int8_file:
            spec = ExportSpec(checkpoint=args.checkpoint, format="onnx", int8=True, out=int8, root=args.root)
            report["int8_export"] = {k: v for k, v in export_checkpoint(spec).items() if k != "path"}
        report["int8"] = compare(reference, logits(load_for_inference(int8), images, batch=64), targets)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
