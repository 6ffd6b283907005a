"""The model and its export (sections 4-5; small devices): `googlenet summary` and `googlenet export`."""

from __future__ import annotations

import argparse
import json

from googlenet.cli.options import add_checkpoint_option
from googlenet.forms import EXPORT_FORMS


def summary(a: argparse.Namespace) -> None:
    """Table 1 computed from the built model."""
    from googlenet.model.summary import render, table1_for

    print(render(table1_for(a.model, a.input_size, a.naive, a.width), a.format))


def add_summary(p: argparse.ArgumentParser) -> None:
    from googlenet.model import VARIANTS

    p.description = (
        "Walk the built model's modules and print Table 1: type, patch size/stride, output "
        "size, depth, filter counts, weights and multiply-adds per row, beside the paper's printed figures. "
        "Rows marked * differ from the printed table (for the paper's model at 224: the table's slips)."
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
    p.set_defaults(run=summary)


def export(a: argparse.Namespace) -> None:
    """Write a checkpoint as an ONNX, TorchScript or ExecuTorch file (int8 with --int8), checked against eager."""
    from googlenet.export import ExportSpec, export_checkpoint

    spec = ExportSpec(
        checkpoint=a.checkpoint,
        format=a.format,
        int8=a.int8,
        out=a.out,
        data=a.data,
        split=a.split,
        root=a.root,
        check_images=a.check_images,
        calibration_images=a.calibration_images,
        calibration_data=a.calibration_data,
        tolerance=a.tolerance,
        min_agreement=a.min_agreement,
    )
    report = export_checkpoint(spec)
    if a.json:
        print(json.dumps(report))
        return
    print(
        f"{report['path']} ({report['bytes'] / 2**20:.1f} MiB, {a.format}{' int8' if a.int8 else ''}): against "
        f"eager on {report['images']} {a.data} images, largest logit difference {report['max_abs_diff']:.2e} "
        f"(relative {report['relative_diff']:.2e}), top-1 agreement {100 * report['top1_agreement']:.2f}%"
    )


def add_export(p: argparse.ArgumentParser) -> None:
    from googlenet.export import FORMATS

    p.description = (
        "Export the inference model (BatchNorm folded; for TorchScript also each Inception's 1x1 "
        "convolutions fused, which onnxruntime runs slower than the separate ones) as a "
        "file that runs without this package: ONNX for onnxruntime, TorchScript for torch.jit, or an ExecuTorch "
        "program (.pte, lowered to the XNNPACK delegate) for phones and embedded CPUs (pip install -e "
        "'.[executorch]'). The weights' metadata record (class names, mean/std, input size, ...) travels in the "
        "file (ONNX metadata_props, the TorchScript extra file googlenet.json, the ExecuTorch constant method "
        "googlenet_meta). --int8 quantises the ONNX file with onnxruntime's static post-training quantisation, or "
        "the ExecuTorch program with PT2E's XNNPACK quantiser, calibrated on real images. The file's logits are "
        "then compared with the eager model's on the first --check-images images of --data; an export that "
        "differs beyond the tolerance is deleted and the command fails."
    )
    add_checkpoint_option(p, f"weights: {EXPORT_FORMS}", many=False)
    p.add_argument("--format", default="onnx", choices=list(FORMATS), help="file format (default: onnx)")
    p.add_argument("--int8", action="store_true", help="int8 post-training quantisation (ONNX, ExecuTorch)")
    p.add_argument(
        "--out",
        help="output file (default: beside the weights, model.onnx / model.int8.onnx / model.torchscript.pt / "
        "model.pte / model.int8.pte)",
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
    p.set_defaults(run=export)


def weights_import(a: argparse.Namespace) -> None:
    """Convert BVLC's Caffe GoogLeNet into our weights file."""
    from googlenet.model.hub import import_caffemodel

    report = import_caffemodel(a.file, a.out)
    if a.json:
        print(json.dumps(report))
        return
    which = "BVLC's GoogLeNet (sha1 checked)" if report["bvlc"] else f"a GoogLeNet caffemodel (sha1 {report['sha1']})"
    print(
        f"{report['path']}: {which}, {report['classes']} classes, "
        f"auxiliary heads {'in' if report['aux'] else 'not in'} it"
    )


def add_weights(p: argparse.ArgumentParser) -> None:
    p.description = "Weights from elsewhere, converted once into this package's .safetensors with a metadata record."
    sub = p.add_subparsers(title="weights commands", metavar="COMMAND", required=True)
    i = sub.add_parser(
        "import",
        help="convert BVLC's Caffe GoogLeNet (.caffemodel) into the paper variant's .safetensors",
        description="Read a .caffemodel of BVLC GoogLeNet (models/bvlc_googlenet; no Caffe needed), map its layers "
        "onto the paper variant (auxiliary heads too, where the file has them), turn its BGR 0-255 input into RGB "
        "with the matching mean/std, add ImageNet's class names, and write it with its metadata record. A file "
        "named bvlc_googlenet.caffemodel must have the published sha1. Every --checkpoint also reads a "
        ".caffemodel directly.",
    )
    i.add_argument("file", metavar="FILE", help="the .caffemodel")
    i.add_argument("--out", help="the .safetensors file to write (default: FILE with .safetensors)")
    i.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    i.set_defaults(run=weights_import)
