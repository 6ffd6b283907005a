"""The TorchScript format: .torchscript.pt files for torch.jit (the traced, frozen inference model with its
metadata record attached), run like a model under the oneDNN Graph fuser on the CPU."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from googlenet.model.formats import ExportFormat
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.inference import optimize_for_inference
from googlenet.model.weights import ModelMeta

META_FILE = "googlenet.json"  # the metadata record, as an extra file in a TorchScript archive


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """torch.jit still works but warns on each call that it is deprecated in favour of torch.export; the issue
    asks for TorchScript files, so the warning is said once, in docs/inference.md, rather than on every run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        yield


@contextlib.contextmanager
def onednn_fusion(enabled: bool = True) -> Iterator[None]:
    """TorchScript's oneDNN Graph fuser on (or off) for the calls inside, restored afterwards: on the CPU it
    runs each convolution with its bias, ReLU and the neighbouring operations as one oneDNN partition (the
    fastest PyTorch path at batch 1 in benchmarks/inference.py). The switch is process-wide in torch.jit, hence
    the scope. It does not mix with `torch.jit.optimize_for_inference`."""
    before = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(enabled)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(before)


def export_torchscript(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, meta: ModelMeta) -> Path:
    """Trace `model` (images -> logits) on `example`, freeze it (weights become constants) and save it with
    `meta` as the archive's extra file googlenet.json. Load it with
    `torch.jit.load(path, _extra_files={"googlenet.json": ""})`; no googlenet package is needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_jit(), torch.inference_mode(False), torch.no_grad():  # tracing records no inference tensors
        traced = torch.jit.freeze(torch.jit.trace(model.eval(), example))
        torch.jit.save(traced, str(path), _extra_files={META_FILE: meta.to_json()})
    return path


class TorchScriptClassifier(nn.Module):
    """An exported TorchScript file used like a model: images -> logits, `meta`. On the CPU its graph runs
    with the oneDNN Graph fuser (`onednn_fusion`) unless `fuse` is False; the first two calls at each new
    input shape profile and compile the graph."""

    def __init__(self, path: str | os.PathLike, fuse: bool = True) -> None:
        super().__init__()
        self.fuse = fuse
        extra = {META_FILE: ""}
        try:
            with quiet_jit():
                self.net = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as err:
            raise ValueError(f"{path} is no TorchScript archive ({str(err).splitlines()[0]})") from None
        if not extra[META_FILE]:
            raise ValueError(f"{path} has no googlenet metadata record; export it with `googlenet export`")
        self.meta = ModelMeta.from_json(extra[META_FILE])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with onednn_fusion(self.fuse and images.device.type == "cpu"):
            return self.net(images)


def load(path: Path) -> TorchScriptClassifier:
    """Any .pt file: a TorchScript export, or one line saying it is not one."""
    try:
        return TorchScriptClassifier(path)
    except ValueError:
        raise ValueError(
            f"{path} is no exported TorchScript model (a training checkpoint? pass the run's folder or its "
            "model.safetensors)"
        ) from None


def write(model: GoogLeNet, path: Path, example: torch.Tensor, calibration: torch.Tensor | None) -> Path:
    """BatchNorm folded and each Inception's 1x1s fused."""
    return export_torchscript(optimize_for_inference(model), path, example, model.meta)


FORMAT = ExportFormat("torchscript", ".torchscript.pt", write, load, reads=(".pt",))
