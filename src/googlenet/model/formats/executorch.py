"""The ExecuTorch format: .pte programs for phones and embedded CPUs (torch.export of the inference model
lowered to the XNNPACK delegate, fp32 or int8 through PT2E quantisation for XNNPACK), run like a model by
ExecuTorch's runtime."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from googlenet.model.formats import ExportFormat
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.inference import optimize_for_inference
from googlenet.model.weights import ModelMeta

PTE_META_METHOD = "googlenet_meta"  # the metadata record, as a constant method of an ExecuTorch program
MAX_PTE_BATCH = 32  # the largest batch of the dynamic export that PT2E calibrates on


def executorch_missing() -> str | None:
    """None where ExecuTorch is installed, else the one line that says how to get it."""
    if importlib.util.find_spec("executorch") is None:
        return "ExecuTorch is not installed: pip install -e '.[executorch]' (or pip install executorch)"
    return None


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


class ExecuTorchClassifier(nn.Module):
    """An exported ExecuTorch .pte program run by ExecuTorch's Python runtime on the CPU (its XNNPACK delegate),
    used like a model: images -> logits, `meta`. Batches over the program's planned input size (`max_batch`: 1
    for the programs `googlenet export` writes) run in chunks."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        if executorch_missing():
            raise ValueError(executorch_missing())
        from executorch.runtime import Runtime

        try:
            program = Runtime.get().load_program(Path(path))
            self.method = program.load_method("forward")
            self.max_batch = int(self.method.metadata.input_tensor_meta(0).sizes()[0])
            record = program.load_method(PTE_META_METHOD) if PTE_META_METHOD in program.method_names else None
        except Exception as err:  # the runtime raises RuntimeError / ValueError with its error code
            first = (str(err).splitlines() or [""])[0]
            raise ValueError(f"{path} is not a readable ExecuTorch program ({type(err).__name__}: {first})") from None
        if record is None:
            raise ValueError(f"{path} has no googlenet metadata record; export it with `googlenet export`")
        self.meta = ModelMeta.from_json(bytes(record.execute(())[0].numpy()).decode())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        chunks = images.float().contiguous().cpu().split(self.max_batch)
        logits = torch.cat([self.method.execute((chunk.contiguous(),))[0] for chunk in chunks])
        return logits.to(images.device)


def write(model: GoogLeNet, path: Path, example: torch.Tensor, calibration: torch.Tensor | None) -> Path:
    """XNNPACK takes the graph as ONNX does: BatchNorm folded, branches apart, and its layout pass wants NCHW
    weights even where the eager model was made channels_last (a weight shared with `model` changes layout only,
    not value)."""
    plain = optimize_for_inference(model, channels_last=False, fuse_1x1=False)
    plain = plain.to(memory_format=torch.contiguous_format)
    return export_executorch(plain, path, example, model.meta, None if calibration is None else calibration.split(32))


FORMAT = ExportFormat("executorch", ".pte", write, ExecuTorchClassifier, int8=True)
