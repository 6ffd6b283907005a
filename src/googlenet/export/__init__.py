"""`googlenet export`, for small devices (the paper's "individual devices including even those with limited
computational resources"): weights written in an exported format (googlenet.model.exported's `FORMATS`: ONNX
files for onnxruntime, TorchScript files for torch.jit, ExecuTorch programs for phones, int8 ONNX and ExecuTorch
files), each carrying the weights' metadata record and checked against the eager model on real images before
it is kept."""

from __future__ import annotations

import os
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torchvision.transforms.v2 import functional as F

from googlenet.data.loaders import dataset_for
from googlenet.data.multicrop import CropSpec
from googlenet.model.exported import FORMATS, exported_format, load_exported, register_format
from googlenet.model.formats import ExportFormat
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.weights import ModelMeta, weights_file

__all__ = [
    "FORMATS",
    "ExportFormat",
    "ExportSpec",
    "check",
    "compare",
    "default_path",
    "export",
    "load_exported",
    "register_format",
    "sample_images",
    "write",
]


def sample_images(meta: ModelMeta, data: str, split: str | None, root: str | None, count: int) -> torch.Tensor:
    """The first `count` images of a dataset split as the model sees them at test time: one centre crop
    (as `googlenet evaluate --crops 1`), normalised with the weights' mean/std. (count, 3, S, S) float."""
    dataset = dataset_for(data, split or "test", root)
    spec = CropSpec(1, meta.input_size, meta.crop_pct, meta.resize)
    first = range(min(count, len(cast(Sized, dataset))))  # map-style: sized, though torch's Dataset type is not
    images = [spec(image)[0] for image, _ in (dataset[i] for i in first)]
    pixels = F.to_dtype(torch.cat(images), torch.float32, scale=True)
    return F.normalize(pixels, list(meta.mean), list(meta.std))


def compare(eager: torch.Tensor, exported: torch.Tensor) -> dict[str, float]:
    """How far exported logits are from eager ones: largest absolute difference relative to the largest
    eager logit (at least 1), and the fraction of images whose top-1 class is the same."""
    largest = float((exported - eager).abs().max())
    return {
        "max_abs_diff": largest,
        "relative_diff": largest / max(1.0, float(eager.abs().max())),
        "top1_agreement": float((exported.argmax(1) == eager.argmax(1)).float().mean()),
    }


def default_path(checkpoint: str | os.PathLike, format: str, int8: bool) -> Path:
    """Beside the weights: model.onnx, model.int8.onnx, model.torchscript.pt, model.pte, model.int8.pte (the
    format's suffix)."""
    weights = weights_file(checkpoint)
    return weights.with_name(weights.stem + (".int8" if int8 else "") + FORMATS.get_part(format).suffix)


def write(
    model: GoogLeNet, format: str, path: Path, example: torch.Tensor, calibration: torch.Tensor | None = None
) -> Path:
    """`model`'s inference form as `format` at `path`; int8 when `calibration` images are given (batches of 32
    calibrate onnxruntime's quantiser or PT2E's observers)."""
    fmt = FORMATS.get_part(format)
    if calibration is not None and not fmt.int8:
        int8 = ", ".join(name for name, f in FORMATS.items() if f.int8)
        raise ValueError(f"--int8 is available for --format {int8}, not {format}")
    return fmt.write(model, path, example, calibration)


def check(eager: nn.Module, path: Path, images: torch.Tensor, tolerance: float, min_agreement: float | None) -> dict:
    """Compare the exported file's logits with `eager`'s on `images`. fp32 exports must agree within
    `tolerance` (relative to the largest logit); int8 and bfloat16 ones (`min_agreement` given) must keep the
    top-1 class of at least that fraction of the images. A file that fails is deleted and the failure raised."""
    exported = load_exported(path)
    with torch.inference_mode():
        reference = torch.cat([eager(x) for x in images.split(32)]).float()
        logits = torch.cat([exported(x) for x in images.split(32)]).float()
    report = compare(reference, logits)
    failed = report["relative_diff"] > tolerance if min_agreement is None else report["top1_agreement"] < min_agreement
    if failed:
        fmt = exported_format(path)
        for file in fmt.files(path) if fmt is not None else [path]:  # an OpenVINO file's .bin too
            file.unlink(missing_ok=True)
        bound = f"tolerance {tolerance:g}" if min_agreement is None else f"top-1 agreement {min_agreement:g}"
        raise ValueError(
            f"the export differs from the eager model beyond {bound} on {len(images)} images "
            f"(relative difference {report['relative_diff']:.2e}, top-1 agreement {report['top1_agreement']:.4f}); "
            f"{path} was not kept"
        )
    return {**report, "images": len(images)}


def export(
    eager: GoogLeNet,
    format: str,
    path: str | os.PathLike,
    check_images: torch.Tensor,
    calibration: torch.Tensor | None = None,
    tolerance: float = 1e-4,
    min_agreement: float = 0.97,
) -> dict[str, Any]:
    """Write `eager` (a loaded model with `meta`) as `format`, int8 when `calibration` is given, and check it
    against `eager` on `check_images`. Returns the check's report, with the path and size of the file."""
    if len(check_images) == 0:
        raise ValueError("no images to check the export on")
    path, eager = Path(path), eager.eval()
    write(eager, format, path, check_images[:2], calibration)
    lossy = calibration is not None or FORMATS.get_part(format).reduced_precision
    report = check(eager, path, check_images, tolerance, min_agreement if lossy else None)
    return {
        "path": str(path),
        "format": format,
        "int8": calibration is not None,
        "bytes": sum(file.stat().st_size for file in FORMATS.get_part(format).files(path)),
        **report,
    }


@dataclass(frozen=True)
class ExportSpec:
    """One export, as `googlenet export` runs it: the weights `checkpoint` (a .safetensors file or a run's folder)
    written as `format` (int8 with `int8`, calibrated on `calibration_images` images of `calibration_data`,
    default: Fashion-MNIST's train split or the `data` folder) to `out` (default: beside the weights), checked
    against the eager model on the first `check_images` images of `data` (`split`, read from `root`): fp32 within
    `tolerance` of the largest logit, int8 agreeing on the top-1 class of at least `min_agreement` of them."""

    checkpoint: str
    format: str = "onnx"
    int8: bool = False
    out: str | None = None
    data: str = "fashion_mnist"
    split: str = "test"
    root: str | None = None
    check_images: int = 256
    calibration_images: int = 512
    calibration_data: str | None = None
    tolerance: float = 1e-4
    min_agreement: float = 0.97

    def check(self) -> None:
        """Impossible values are a one-line ValueError, before anything is loaded."""
        FORMATS.get_part(self.format)
        if self.check_images < 1 or self.calibration_images < 1 or self.tolerance <= 0:
            raise ValueError("--check-images and --calibration-images must be >= 1 and --tolerance > 0")
        if not 0 < self.min_agreement <= 1:
            raise ValueError("--min-agreement must be in (0, 1]")


def export_checkpoint(spec: ExportSpec) -> dict[str, Any]:
    """`googlenet export`: the export `spec` describes, written and checked. Returns `export`'s report."""
    from googlenet.model import GoogLeNet, load_for_inference

    spec.check()
    model = load_for_inference(spec.checkpoint, optimize=False)
    if not isinstance(model, GoogLeNet):
        raise ValueError(f"{spec.checkpoint} is already an export; pass the .safetensors weights")
    images = sample_images(model.meta, spec.data, spec.split, spec.root, spec.check_images)
    calibration = None
    if spec.int8:
        source = spec.calibration_data or spec.data
        split = "train" if source == "fashion_mnist" else None
        calibration = sample_images(model.meta, source, split, spec.root, spec.calibration_images)
    path = Path(spec.out) if spec.out else default_path(spec.checkpoint, spec.format, spec.int8)
    return export(model, spec.format, path, images, calibration, spec.tolerance, spec.min_agreement)
