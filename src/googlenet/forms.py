"""The forms in which weights are given (--checkpoint, `export --checkpoint`, model.weights), listed once: every
message and help text that names them reads them here. Imports nothing (the --help texts use it)."""

from __future__ import annotations

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".caffemodel")  # weights files; exported files: model.exported's formats
PUBLISHED_NAMES = ("bvlc", "torchvision", "places365")  # model.hub.PUBLISHED's names (tests/test_cli.py checks)

_OURS = "a .safetensors file of ours (with its metadata record), a training run's folder"
_EXPORTED = "an exported .onnx (onnxruntime) / TorchScript .pt / ExecuTorch .pte / OpenVINO .openvino.xml file"
_CAFFE = "BVLC's Caffe GoogLeNet .caffemodel"
_TORCHVISION = "torchvision's googlenet .pth state_dict"
_PUBLISHED = f"published weights by name: {' / '.join(PUBLISHED_NAMES)} (downloaded once into torch.hub's cache)"

CHECKPOINT_FORMS = f"{_OURS}, {_EXPORTED}, {_CAFFE}, or {_PUBLISHED}"  # what testing, serving, detection read
EXPORT_FORMS = f"{_OURS}, {_CAFFE}, or {_PUBLISHED}"  # what `googlenet export` writes out
INITIAL_WEIGHTS_FORMS = f"{_OURS}, {_CAFFE}, {_TORCHVISION}, or {_PUBLISHED}"  # what training starts from
