"""The OpenVINO format in bfloat16: the same IR file as `openvino` (float32 weights) marked to run in bfloat16,
OpenVINO's default on CPUs with AVX512-BF16 or AMX and its fastest path there (float32 on other CPUs)."""

from __future__ import annotations

from pathlib import Path

import torch

from googlenet.model.formats import ExportFormat
from googlenet.model.formats.openvino import OpenVinoClassifier, write_ir
from googlenet.model.googlenet import GoogLeNet


def write(model: GoogLeNet, path: Path, example: torch.Tensor, calibration: torch.Tensor | None) -> Path:
    return write_ir(model, path, example, "bf16")


# Its logits carry bfloat16's rounding: checked on export by top-1 agreement, as int8 files are.
FORMAT = ExportFormat(
    "openvino_bf16", ".bf16.openvino.xml", write, OpenVinoClassifier, reduced_precision=True, companions=(".bin",)
)
