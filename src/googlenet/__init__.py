"""googlenet: a faithful, fast and practical implementation of "Going deeper with convolutions"."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names and the modules that hold them, imported when first used: `import googlenet` alone (and the
# `googlenet` command's --help) does not pay for torch and torchvision.
_PUBLIC = {
    "GoogLeNet": "googlenet.model",
    "GoogLeNetOutputs": "googlenet.model",
    "Inception": "googlenet.model",
    "ModelMeta": "googlenet.model",
    "NaiveInception": "googlenet.model",
    "build_model": "googlenet.model",
    "list_models": "googlenet.model",
    "load_model": "googlenet.model",
    "read_weights": "googlenet.model",
    "save_weights": "googlenet.model",
    "classify": "googlenet.evaluate.multicrop",
    "transforms_for": "googlenet.data.transforms",
}

__all__ = [
    "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception",
    "ModelMeta",
    "NaiveInception",
    "__version__",
    "build_model",
    "classify",
    "list_models",
    "load_model",
    "read_weights",
    "save_weights",
    "transforms_for",
]

if TYPE_CHECKING:
    from googlenet.data.transforms import transforms_for
    from googlenet.evaluate.multicrop import classify
    from googlenet.model import (
        GoogLeNet,
        GoogLeNetOutputs,
        Inception,
        ModelMeta,
        NaiveInception,
        build_model,
        list_models,
        load_model,
        read_weights,
        save_weights,
    )


if "timm" in sys.modules:  # timm came first: give it our models now (timm.create_model("googlenet_paper"))
    importlib.import_module("googlenet.model.timm_models")


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'googlenet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
