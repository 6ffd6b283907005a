"""The OpenVINO format: OpenVINO IR (model.openvino.xml beside its .bin) converted from our ONNX export, run like a
model by OpenVINO's CPU plugin in float32; `openvino_bf16.py` writes the same file to run in bfloat16."""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import torch
from torch import nn

from googlenet.model.formats import ExportFormat
from googlenet.model.formats import onnx as onnx_format
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.weights import METADATA_KEY, ModelMeta

META_INFO = [METADATA_KEY, "meta"]  # where the IR's rt_info holds the metadata record (JSON)
PRECISION_INFO = [METADATA_KEY, "inference_precision"]  # and the precision it runs in: OpenVINO's hint, f32 or bf16
COMPILED_BATCHES = 4  # batch sizes a loaded file keeps compiled (static shapes: OpenVINO's fastest)


def openvino_missing() -> str | None:
    """None where OpenVINO is installed, else the one line that says how to get it."""
    if importlib.util.find_spec("openvino") is None:
        return "OpenVINO is not installed: pip install -e '.[openvino]' (or pip install openvino)"
    return None


@functools.cache
def _core() -> Any:
    """The process's one openvino.Core (OpenVINO's advice): each Core keeps its own plugins and thread pools, which
    piled up in a process that loaded many files (the test suite's crashed, SIGSEGV)."""
    import openvino as ov

    return ov.Core()


def write_ir(model: GoogLeNet, path: Path, example: torch.Tensor, precision: str) -> Path:
    """`model`'s ONNX export (the graph onnxruntime runs) converted to OpenVINO IR with float32 weights, the
    metadata record and `precision` (OpenVINO's INFERENCE_PRECISION_HINT) in its rt_info."""
    if openvino_missing():
        raise ValueError(openvino_missing())
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = onnx_format.write(model, Path(tmp) / "model.onnx", example, None)
        ir = ov.convert_model(str(onnx_file))
    ir.set_rt_info(model.meta.to_json(), META_INFO)
    ir.set_rt_info(precision, PRECISION_INFO)
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ir, str(path), compress_to_fp16=False)  # OpenVINO's default stores fp16 weights
    return path


def write(model: GoogLeNet, path: Path, example: torch.Tensor, calibration: torch.Tensor | None) -> Path:
    return write_ir(model, path, example, "f32")


class OpenVinoClassifier(nn.Module):
    """An OpenVINO IR file run by OpenVINO's CPU plugin in the precision written in it, used like a model: images ->
    logits, `meta`. Each batch size met is compiled once with a static shape (the last few are kept)."""

    def __init__(self, path: str | os.PathLike) -> None:
        if openvino_missing():
            raise ValueError(openvino_missing())
        super().__init__()
        self.core, path = _core(), Path(path)
        weights = path.with_suffix(".bin")
        # Only well-formed IR is handed to OpenVINO: on a file that is not, it tries each of its frontends
        # (TensorFlow's text format among them), and its parse errors crashed the test process (SIGSEGV) once
        # other native libraries were loaded (the whole suite: ExecuTorch, OpenCV, ...).
        try:
            root = ElementTree.parse(path).getroot()
        except (ElementTree.ParseError, OSError) as err:
            raise ValueError(f"{path} is not a readable OpenVINO IR file ({err})") from None
        if root.tag != "net":
            raise ValueError(f"{path} is not a readable OpenVINO IR file (its XML is not a <net>)")
        if not weights.is_file():
            raise ValueError(f"{path} is not a readable OpenVINO IR file ({weights.name}, its weights, is missing)")
        try:
            self.ir = self.core.read_model(str(path), str(weights))
        except RuntimeError as err:  # OpenVINO raises RuntimeError with many lines
            first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise ValueError(f"{path} is not a readable OpenVINO IR file ({first})") from None
        if not self.ir.has_rt_info(META_INFO):
            raise ValueError(f"{path} has no googlenet metadata record; export it with `googlenet export`")
        self.meta = ModelMeta.from_json(self.ir.get_rt_info(META_INFO).astype(str))
        written = self.ir.has_rt_info(PRECISION_INFO)
        self.precision = self.ir.get_rt_info(PRECISION_INFO).astype(str) if written else "f32"
        self._requests: dict[int, Any] = {}

    def _request(self, batch: int) -> Any:  # openvino's InferRequest (openvino is optional)
        request = self._requests.get(batch)
        if request is None:
            while len(self._requests) >= COMPILED_BATCHES:
                del self._requests[next(iter(self._requests))]
            ir = self.ir.clone()
            ir.reshape([batch, *self._image_shape()])
            config = {"INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
            request = self._requests[batch] = self.core.compile_model(ir, "CPU", config).create_infer_request()
        return request

    def _image_shape(self) -> list[int]:
        shape = self.ir.input(0).get_partial_shape()
        return [shape[i].get_length() for i in range(1, shape.rank.get_length())]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        request = self._request(images.shape[0])
        logits = request.infer({0: images.float().contiguous().cpu().numpy()})[0]
        return torch.from_numpy(logits.copy()).to(images.device)


FORMAT = ExportFormat("openvino", ".openvino.xml", write, OpenVinoClassifier, companions=(".bin",))
