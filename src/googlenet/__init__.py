"""googlenet: a faithful, fast and practical implementation of "Going deeper with convolutions"."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
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
    "activations": "googlenet.inside",
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
    "activations",
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
    from googlenet.inside import activations
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


class _RegisterWithTimm(importlib.abc.MetaPathFinder):
    """Gives timm our models (timm.create_model("googlenet_paper")) as soon as timm is imported, if it ever is:
    `import googlenet` imports neither timm nor torch for it. Finds nothing itself: it wraps the spec that the
    other finders give for timm, so that timm's own loading runs first, then googlenet.model.timm_models."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "timm":
            return None
        sys.meta_path.remove(self)  # once: the finders after this one give timm's spec
        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        load = loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            importlib.import_module("googlenet.model.timm_models")

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "timm" in sys.modules:  # timm came first: give it our models now
    importlib.import_module("googlenet.model.timm_models")
elif not any(isinstance(finder, _RegisterWithTimm) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithTimm())


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'googlenet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
