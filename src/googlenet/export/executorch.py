"""ExecuTorch programs (.pte) for phones and embedded CPUs: torch.export of the inference model lowered to the
XNNPACK delegate, fp32 or int8 through PT2E quantisation for XNNPACK (googlenet.model.exported runs them)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from googlenet.model.exported import MAX_PTE_BATCH, PTE_META_METHOD, executorch_missing
from googlenet.model.weights import ModelMeta


def _export(model: nn.Module, example: torch.Tensor, dynamic: bool = True) -> torch.export.ExportedProgram:
    """torch.export, with a dynamic batch dimension up to MAX_PTE_BATCH (for calibrating), or static at the
    batch of `example`."""
    if not dynamic:
        return torch.export.export(model, (example.contiguous(),))
    batch = torch.export.Dim("batch", min=1, max=MAX_PTE_BATCH)
    return torch.export.export(model, (example.contiguous(),), dynamic_shapes={"x": {0: batch}})


def quantize_pt2e(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """int8 post-training static quantisation for XNNPACK: weights symmetric per output channel, activations
    per tensor, observers calibrated on `calibration` batches (PT2E: prepare_pt2e, calibrate, convert_pt2e)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(_export(model, example).module(), quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(batch.contiguous())
    return convert_pt2e(prepared)


def export_executorch(
    model: nn.Module,
    path: str | os.PathLike,
    example: torch.Tensor,
    meta: ModelMeta,
    calibration: Iterable[torch.Tensor] | None = None,
) -> Path:
    """Write `model` (images -> logits, one image per call) as one ExecuTorch program lowered to XNNPACK, int8
    when `calibration` batches are given. The program's shapes are static, batch 1, as a device runs it: with a
    dynamic batch XNNPACK ran it about 4x slower at every batch here (docs/inference.md); larger batches run
    one image at a time. `meta` travels inside the file as a constant method
    (PTE_META_METHOD) returning its JSON as a uint8 tensor, so the .pte is self-contained like the other
    formats. Run it with `executorch.runtime.Runtime.get().load_program(path).load_method("forward")`."""
    if executorch_missing():
        raise ValueError(executorch_missing())
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model = model.eval()  # before quantisation: the converted graph refuses .eval()
    with torch.inference_mode(False), torch.no_grad():  # torch.export records no inference tensors
        if calibration is not None:
            model = quantize_pt2e(model, example, calibration)
        record = torch.frombuffer(bytearray(meta.to_json().encode()), dtype=torch.uint8)
        program = to_edge_transform_and_lower(
            _export(model, example[:1], dynamic=False),
            partitioner=[XnnpackPartitioner()],
            constant_methods={PTE_META_METHOD: record},
        ).to_executorch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(program.buffer)
    return path
