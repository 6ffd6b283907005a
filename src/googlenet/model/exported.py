"""The registry of exported file formats (`FORMATS`) and `load_exported`: an exported file used like a model.
The formats are the modules of googlenet/model/formats/ (a module there that defines `FORMAT` is one), those
installed packages declare under the `googlenet.formats` entry points, and any registered in this process."""

from __future__ import annotations

import importlib
import os
import pkgutil
from importlib.metadata import entry_points
from pathlib import Path

from torch import nn

import googlenet.model.formats as formats
from googlenet.model.formats import ExportFormat
from googlenet.registry import Registry

ENTRY_POINTS = "googlenet.formats"  # each entry: a format's name = its ExportFormat

FORMATS: Registry[ExportFormat] = Registry("export format")


def register_format(fmt: ExportFormat) -> ExportFormat:
    """Add an export format: `googlenet export --format NAME` writes it, and every --checkpoint reads its files."""
    return FORMATS.register(fmt.name, fmt)


def find_formats() -> None:
    """Register the modules of googlenet/model/formats/ that define `FORMAT`, and the entry points' formats."""
    for module in pkgutil.iter_modules(formats.__path__):
        fmt = getattr(importlib.import_module(f"{formats.__name__}.{module.name}"), "FORMAT", None)
        if isinstance(fmt, ExportFormat):
            register_format(fmt)
    for entry in entry_points(group=ENTRY_POINTS):
        register_format(entry.load())


find_formats()


def exported_suffixes() -> list[str]:
    """Every file ending an exported format reads."""
    return [suffix for fmt in FORMATS.values() for suffix in fmt.suffixes]


def exported_format(path: str | os.PathLike) -> ExportFormat | None:
    """The format whose file ending `path` has (the longest that fits), or None for a file that is no export."""
    name = Path(path).name
    found = [(len(suffix), fmt) for fmt in FORMATS.values() for suffix in fmt.suffixes if name.endswith(suffix)]
    return max(found, key=lambda pair: pair[0])[1] if found else None


def load_exported(path: str | os.PathLike) -> nn.Module:
    """An exported file (.onnx for onnxruntime, ExecuTorch .pte, TorchScript .pt, or a registered kind) as a
    module: images -> logits, with `meta`."""
    fmt = exported_format(path)
    if fmt is None:
        raise ValueError(f"{path}: no exported format ends so; exports end in {', '.join(exported_suffixes())}")
    return fmt.load(Path(path))
