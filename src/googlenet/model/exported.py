"""Exported files used like models: an .onnx file run by onnxruntime, a TorchScript .pt file run by torch.jit
(under the oneDNN Graph fuser on the CPU), an ExecuTorch .pte program run by ExecuTorch's runtime, each with
the metadata record `googlenet export` put in it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from googlenet.model.weights import METADATA_KEY, ModelMeta
from googlenet.registry import Registry

INPUT, OUTPUT = "images", "logits"  # the ONNX graph's input and output names
META_FILE = "googlenet.json"  # the metadata record, as an extra file in a TorchScript archive
PTE_META_METHOD = "googlenet_meta"  # the metadata record, as a constant method of an ExecuTorch program
MAX_PTE_BATCH = 32  # the largest batch of the dynamic export that PT2E calibrates on


def executorch_missing() -> str | None:
    """None where ExecuTorch is installed, else the one line that says how to get it."""
    if importlib.util.find_spec("executorch") is None:
        return "ExecuTorch is not installed: pip install -e '.[executorch]' (or pip install executorch)"
    return None


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


def _torchscript(path: Path) -> TorchScriptClassifier:
    try:
        return TorchScriptClassifier(path)
    except ValueError:
        raise ValueError(
            f"{path} is no exported TorchScript model (a training checkpoint? pass the run's folder or its "
            "model.safetensors)"
        ) from None


# Exported files by suffix: how each kind is run like a model (googlenet.export registers how each is written).
LOADERS: Registry[Callable[[Path], nn.Module]] = Registry("loader of exported files ending in")


def register_loader(suffix: str, load: Callable[[Path], nn.Module]) -> None:
    """Teach `load_exported` (and so every --checkpoint) files ending in `suffix`: `load` (path) -> a module
    images -> logits with `meta`."""
    LOADERS.register(suffix, load)


for _suffix, _load in ((".onnx", OnnxClassifier), (".pte", ExecuTorchClassifier), (".pt", _torchscript)):
    register_loader(_suffix, _load)


def exported_suffix(path: str | os.PathLike) -> str | None:
    """The registered suffix `path` ends with (the longest), or None for a file that is no export."""
    name = Path(path).name
    found = [suffix for suffix in LOADERS if name.endswith(suffix)]
    return max(found, key=len) if found else None


def load_exported(path: str | os.PathLike) -> nn.Module:
    """An exported file (.onnx for onnxruntime, ExecuTorch .pte, TorchScript .pt, or a registered kind) as a
    module: images -> logits, with `meta`."""
    suffix = exported_suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: no exported format ends so; exports end in {', '.join(LOADERS)}")
    return LOADERS[suffix](Path(path))
