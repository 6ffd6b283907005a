"""The ONNX format: .onnx files written with torch.onnx (int8 by onnxruntime's static quantiser) and run like a
model by onnxruntime."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from googlenet.model.formats import ExportFormat
from googlenet.model.googlenet import GoogLeNet
from googlenet.model.inference import optimize_for_inference
from googlenet.model.weights import METADATA_KEY, ModelMeta

INPUT, OUTPUT = "images", "logits"  # the ONNX graph's input and output names


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, meta: ModelMeta) -> Path:
    """Write `model` (images -> logits, any batch size) as one self-contained .onnx file with `meta` in its
    metadata_props under the key "googlenet" (a JSON record: class names, mean/std, input size, ...)."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        model.eval(),
        (example.contiguous(),),
        dynamo=True,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_shapes={"x": {0: batch}},
        external_data=False,
        verbose=False,
    )
    assert program is not None  # torch.onnx.export returns None only without dynamo=True
    program.model.metadata_props[METADATA_KEY] = meta.to_json()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)
    return path


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over image batches."""

    def __init__(self, batches: Iterable[torch.Tensor]) -> None:
        self.batches = iter(batches)

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT: batch.contiguous().numpy()}


def quantize_int8(
    fp32: str | os.PathLike, path: str | os.PathLike, calibration: Iterable[torch.Tensor], reduce_range: bool = True
) -> Path:
    """int8 post-training static quantisation of an fp32 .onnx file, calibrated (min/max) on `calibration`
    batches: weights per output channel (signed), activations per tensor (unsigned), QDQ format.

    `reduce_range` keeps weights to 7 bits: on CPUs without VNNI onnxruntime multiplies u8 x s8 with
    VPMADDUBSW, whose 16-bit sums can saturate with full-range weights (onnxruntime's quantisation docs)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = onnx.load(str(fp32)).metadata_props
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))  # shape inference and graph clean-up, as the docs advise
        quantize_static(
            str(prepared),
            str(path),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    quantized = onnx.load(str(path))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(meta)
    onnx.save(quantized, str(path))
    return Path(path)


class OnnxClassifier(nn.Module):
    """An exported .onnx file run by onnxruntime on the CPU, used like a model: images -> logits, `meta`."""

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        import onnxruntime as ort

        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default, one thread per physical core
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable files
            raise ValueError(f"{path} is not a readable ONNX file ({type(err).__name__}: {err})") from None
        record = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if record is None:
            raise ValueError(f"{path} has no googlenet metadata record; export it with `googlenet export`")
        self.meta = ModelMeta.from_json(record)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.session.run([OUTPUT], {INPUT: images.float().contiguous().cpu().numpy()})[0]
        return torch.from_numpy(logits).to(images.device)


class EndPaddedMaxPool(nn.Module):
    """A ceil_mode max pool as every ONNX runtime takes it: the input's last row and column repeated at its ends so
    that the last window fits, then a floor-mode pool. The same values: PyTorch's ceil_mode clips a window that
    runs past the input, and a copy of the window's own edge never changes its max (nor, unlike -inf, an int8
    quantiser's range). Strict runtimes (OpenVINO, OpenCV's DNN) refuse a pooling window larger
    than its padded input, which ceil_mode pools reach on small inputs (pool4 of a 32-40 px model sees 2x2)."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = (_pair(v) for v in (pool.kernel_size, pool.stride, pool.padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ends = []
        for size, kernel, stride, pad in zip(x.shape[-2:], self.kernel, self.stride, self.padding, strict=True):
            out = -(-(size + 2 * pad - kernel) // stride) + 1  # PyTorch's ceil_mode output size
            if (out - 1) * stride >= size + pad:  # a last window starting in the padding is dropped
                out -= 1
            ends.append(max(0, (out - 1) * stride + kernel - (size + 2 * pad)))
        if any(ends):  # only where a window runs past the input: no Pad node at the sizes that need none
            x = nn.functional.pad(x, (0, ends[1], 0, ends[0]), mode="replicate")
        return nn.functional.max_pool2d(x, self.kernel, self.stride, self.padding)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def end_padded_pools(module: nn.Module) -> nn.Module:
    """`module` with each ceil_mode MaxPool2d in it made an EndPaddedMaxPool (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.MaxPool2d) and child.ceil_mode:
            setattr(module, name, EndPaddedMaxPool(child))
        else:
            end_padded_pools(child)
    return module


def write(model: GoogLeNet, path: Path, example: torch.Tensor, calibration: torch.Tensor | None) -> Path:
    """onnxruntime picks its own memory layout (NCHWc blocks on x86) and keeps it through Concat but not through
    Split: a fused 1x1 convolution would cost two layout reorders per module, so the ONNX graph keeps the
    branches apart and only has BatchNorm folded; it is exported in PyTorch's default memory format. Its
    ceil_mode pools are written end-padded, so that files of models under 48 px load in OpenVINO and OpenCV."""
    fused = end_padded_pools(optimize_for_inference(model, channels_last=False, fuse_1x1=False))
    if calibration is None:
        return export_onnx(fused, path, example, model.meta)
    fp32 = path.with_name(f".{path.name}.fp32.onnx")
    try:
        export_onnx(fused, fp32, example, model.meta)
        return quantize_int8(fp32, path, calibration.split(32))
    finally:
        fp32.unlink(missing_ok=True)


FORMAT = ExportFormat("onnx", ".onnx", write, OnnxClassifier, int8=True)
