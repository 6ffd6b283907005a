"""`activations(model, images, layers)`: what any layers of the network output for a batch, by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from googlenet.inside.names import resolve_layer


def activations(model: nn.Module, images: torch.Tensor, layers: Sequence[str] | str) -> dict[str, torch.Tensor]:
    """{name: output} of each of `layers` (our module paths, BVLC's blob names or Lucid's mixed3a ... mixed5b) for
    `images`, from one forward pass of `model` as it is (its mode kept; gradients flow where they are enabled; with
    `return_aux=True` when an auxiliary head's layer is asked for).
    Each output is taken as its module returns it, before anything downstream overwrites it in place (the ReLU
    after a bare convolution)."""
    names = [layers] if isinstance(layers, str) else list(layers)
    paths = {name: resolve_layer(model, name) for name in names}  # every name checked before the forward pass
    modules = dict(model.named_modules())
    taken: dict[str, torch.Tensor] = {}

    def keep(path: str) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            taken[path] = output.clone()

        return hook

    handles = [modules[path].register_forward_hook(keep(path)) for path in set(paths.values())]
    aux = any(path.split(".")[0] in ("aux1", "aux2") for path in paths.values())
    try:
        model(images, return_aux=True) if aux else model(images)  # the auxiliary heads run only when asked
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name, path in paths.items() if path not in taken]
    if missing:  # a module the forward pass does not call
        raise ValueError(f"{', '.join(missing)} did not run in the forward pass")
    return {name: taken[path] for name, path in paths.items()}
