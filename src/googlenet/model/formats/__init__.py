"""The file formats `googlenet export` writes and every --checkpoint reads, one module each in this folder: a
module that defines `FORMAT = ExportFormat(...)` is a format (googlenet.model.exported finds it); this file holds
only the spec they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from googlenet.model.googlenet import GoogLeNet


@dataclass(frozen=True)
class ExportFormat:
    """One exported file format, written and read in one place.

    `write` (eager model with `meta`, path, example batch, int8 calibration images or None) -> path: the file;
    `load` (path) -> a module images -> logits with `meta`, so that the file runs wherever weights are taken.
    Written files end in `suffix` (int8 ones in .int8 + `suffix`, where `int8`); `load` also reads files ending
    in any of `reads` (default: `suffix` alone). A `reduced_precision` format computes in fewer bits than float32
    (bfloat16) even unquantised: its files are checked on export by top-1 agreement, as int8 files are. A format
    whose file has `companions` (files of the same name beside it, with those suffixes) is sized with them."""

    name: str
    suffix: str
    write: Callable[[GoogLeNet, Path, torch.Tensor, torch.Tensor | None], Path]
    load: Callable[[Path], nn.Module]
    int8: bool = False
    reads: tuple[str, ...] = ()
    reduced_precision: bool = False
    companions: tuple[str, ...] = ()  # suffixes of files written beside it (OpenVINO's .bin: its weights)

    def files(self, path: Path) -> list[Path]:
        """The file at `path` and those written beside it."""
        return [path, *(path.with_suffix(suffix) for suffix in self.companions)]

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The file endings `load` reads."""
        return self.reads or (self.suffix,)
