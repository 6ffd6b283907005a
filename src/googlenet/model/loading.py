"""One way to get a classifier for testing from any file: inference weights, a training run's folder, or an
exported .onnx / TorchScript / ExecuTorch .pte file."""

from __future__ import annotations

import os
from typing import Any, Protocol, cast

import torch

from googlenet.forms import CHECKPOINT_FORMS
from googlenet.model.exported import exported_format, load_exported
from googlenet.model.hub import resolve
from googlenet.model.inference import optimize_for_inference, precision_dtype
from googlenet.model.variants import load_model
from googlenet.model.weights import ModelMeta, weights_file


class Classifier(Protocol):
    """What testing needs of a model: images (N, 3, S, S) -> logits (N, classes), and its weights' metadata
    record. GoogLeNet and the exported files run like models (each format's loader, googlenet.model.formats)
    are."""

    meta: ModelMeta

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def eval(self) -> Any: ...


def load_for_inference(path: str | os.PathLike, optimize: bool = True, precision: str = "fp32") -> Classifier:
    """A model with its metadata record (`meta`) from inference weights (.safetensors, a training run's
    folder, a .caffemodel, or `bvlc` / `torchvision`: published weights by name), or from an exported file
    (.onnx for onnxruntime, TorchScript .pt, ExecuTorch .pte; or any format in googlenet.model.exported).

    Weights come back as the inference model (`optimize_for_inference`: same logits, computed faster; in
    bfloat16 with `precision="bf16"`); with `optimize=False` as the eager GoogLeNet they were trained as. An
    exported file runs in the precision it was written in."""
    dtype = precision_dtype(precision)
    path = weights_file(resolve(path))  # `bvlc` or `torchvision`: published weights, from torch.hub's cache
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path} (weights are {CHECKPOINT_FORMS})")
    if exported_format(path) is not None:
        return cast(Classifier, load_exported(path))
    model = load_model(path).eval()
    if not optimize and precision != "fp32":
        raise ValueError("--precision bf16 is a form of the inference model: leave out --no-optimize")
    return optimize_for_inference(model, dtype=dtype) if optimize else model
