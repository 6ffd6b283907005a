"""TorchScript files for torch.jit: the traced, frozen inference model with its metadata record attached."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from googlenet.model.exported import META_FILE, quiet_jit
from googlenet.model.weights import ModelMeta


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
