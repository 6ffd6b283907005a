"""Class activation maps (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization") on section 5's
architecture, exact for its global average pooling, and Grad-CAM (Selvaraju et al. 2017) for any layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from googlenet.inside.names import resolve_layer
from googlenet.model.googlenet import GoogLeNet


@dataclass(frozen=True)
class Maps:
    """Per image: `maps` (N, h, w) on the layer's grid, the explained `classes` (N,) and the model's `logits`."""

    maps: torch.Tensor
    classes: torch.Tensor
    logits: torch.Tensor


def _classes(logits: torch.Tensor, classes: torch.Tensor | int | None) -> torch.Tensor:
    """The classes to explain: each image's top class, or the one given (an int for all, or one per image)."""
    if classes is None:
        return logits.argmax(1)
    chosen = torch.as_tensor(classes, dtype=torch.long, device=logits.device).expand(logits.shape[0])
    if int(chosen.min()) < 0 or int(chosen.max()) >= logits.shape[1]:
        raise ValueError(f"class index out of range: the model has {logits.shape[1]} classes")
    return chosen


def class_activation_maps(model: GoogLeNet, images: torch.Tensor, classes: torch.Tensor | int | None = None) -> Maps:
    """M_c(x, y) = sum_k w_ck f_k(x, y): the classifier's weights of class c over the last Inception module's maps
    f (inception_5b). Global average pooling then the linear layer make each map's mean plus the class's bias the
    class's logit exactly (in eval mode, where dropout is the identity)."""
    linear = model.linear
    if not isinstance(linear, nn.Linear):
        raise ValueError("a class activation map needs the model's classifier (num_classes > 0)")
    with torch.no_grad():
        features = model.forward_features(images)  # N x 1024 x h x w, inception_5b's output
        logits = model.forward_head(features)
        chosen = _classes(logits, classes)
        maps = torch.einsum("nc,nchw->nhw", linear.weight[chosen].to(features.dtype), features)
    return Maps(maps, chosen, logits)


def grad_cam(model: nn.Module, images: torch.Tensor, layer: str, classes: torch.Tensor | int | None = None) -> Maps:
    """Grad-CAM of `layer` (any name googlenet.inside resolves): ReLU(sum_k a_k A_k), a_k the spatial mean of the
    class score's gradient with respect to the layer's map A_k."""
    module = dict(model.named_modules())[resolve_layer(model, layer)]
    kept: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, args, out: kept.append(out))
    try:
        with torch.enable_grad():
            logits = model(images.detach().requires_grad_())
            chosen = _classes(logits.detach(), classes)
            (grads,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), kept[0])
    finally:
        handle.remove()
    if kept[0].dim() != 4:
        shape = tuple(kept[0].shape)
        raise ValueError(f"{layer} has no spatial map (its output is {shape}); choose a convolutional layer")
    weights = grads.mean((2, 3), keepdim=True)
    return Maps(F.relu((weights * kept[0].detach()).sum(1)), chosen, logits.detach())


def upsampled(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps (N, h, w) resized to the image's (height, width), bilinearly, as the papers draw them."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def peak_box(heat: torch.Tensor, fraction: float = 0.2) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), x1 and y1 exclusive: the box around the connected region that holds the map's maximum, of
    the values above `fraction` of the way from its minimum to its maximum (Zhou et al.'s localisation: 20% of the
    map scaled to [0, 1])."""
    from scipy import ndimage

    values = heat.detach().float().cpu().numpy()
    peak = divmod(int(values.argmax()), values.shape[1])
    regions, _ = ndimage.label(values >= values.min() + fraction * (values.max() - values.min()))
    ys, xs = (regions == regions[peak]).nonzero()
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
