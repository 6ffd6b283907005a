"""Training checkpoints: written atomically, loaded without running pickled code."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from googlenet.model.weights import load_pickle


class RunStopped(Exception):
    """A run that stopped on purpose (a signal, non-finite losses, too much unreadable data), its last
    checkpoint intact; `code` is the exit status the command ends with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write` on a temporary file beside `path`, flush it to disk, then rename it into place.

    A crash at any moment leaves either the previous file or the new one, never a torn file; a failed write
    (a full disk) removes the temporary file, keeps the previous one and raises an OSError that says so.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise OSError(f"could not write {path} ({reason}); the previous one is kept") from None
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)
    return path


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` with `write_atomic`: a crash or a full disk never leaves a torn checkpoint."""
    return write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint` (weights_only: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = load_pickle(path)
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "epoch", "rng"} <= set(state):
        raise ValueError(f"{path} is not a training checkpoint (model, optimizer, step, epoch, rng)")
    return state


def rng_state() -> dict[str, Any]:
    """The RNG states that training draws from (dropout): CPU and, where present, CUDA."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
