"""The paper's training augmentation (section 6) and the evaluation transform, on torchvision.transforms.v2."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torchvision.transforms import InterpolationMode, v2

from googlenet.data.multicrop import CentreCrop

if TYPE_CHECKING:
    from googlenet.model import ModelMeta

# Section 6: "bilinear, area, nearest neighbor and cubic, with equal probability". For PIL images
# torchvision's BOX filter is area averaging.
PAPER_INTERPOLATIONS = (
    InterpolationMode.BILINEAR,
    InterpolationMode.BOX,
    InterpolationMode.NEAREST,
    InterpolationMode.BICUBIC,
)
# AlexNet's PCA lighting noise (Krizhevsky et al. 2012), RGB in [0, 1].
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


class Lighting(v2.Transform):
    """AlexNet PCA lighting noise: rgb += eigvec @ (alpha * eigval), alpha ~ N(0, std) per image.

    Written by hand: torchvision has no such transform. Expects a float image in [0, 1].
    """

    def __init__(self, std: float = 0.1) -> None:
        super().__init__()
        self.std = std

    def make_params(self, flat_inputs: list) -> dict:
        alpha = torch.randn(3) * self.std
        return {"shift": torch.tensor(EIGVEC) @ (alpha * torch.tensor(EIGVAL))}

    def transform(self, inpt, params: dict):
        if not isinstance(inpt, torch.Tensor) or not inpt.is_floating_point():
            return inpt
        return (inpt + params["shift"].to(inpt).view(3, 1, 1)).clamp_(0, 1)


def _resize_choices(size: int, crop: bool, scale: Sequence[float], ratio: Sequence[float], random_interp: bool):
    interpolations = PAPER_INTERPOLATIONS if random_interp else (InterpolationMode.BILINEAR,)
    if crop:
        resizes = [
            v2.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio), interpolation=i) for i in interpolations
        ]
    else:
        resizes = [v2.Resize((size, size), interpolation=i) for i in interpolations]
    return resizes[0] if len(resizes) == 1 else v2.RandomChoice(resizes)


def train_transform(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    random_resized_crop: bool = True,
    crop_scale: Sequence[float] = (0.08, 1.0),
    crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
    random_interpolation: bool = True,
    hflip: bool = True,
    photometric: float = 0.5,
    lighting: float = 0.1,
) -> v2.Compose:
    """PIL image -> normalised float tensor, with the paper's augmentation; each part switchable.

    Random-sized crop (area `crop_scale`, aspect `crop_ratio`) resized with an interpolation drawn
    uniformly from the paper's four; horizontal flip; Howard's photometric distortions (brightness,
    contrast and colour factors in [1 - photometric, 1 + photometric], in random order: ColorJitter
    permutes them); PCA lighting noise; mean subtraction (and division by `std`).
    """
    # Geometry and colour run on the PIL image: torchvision's area (BOX) filter exists only there.
    steps = [_resize_choices(size, random_resized_crop, crop_scale, crop_ratio, random_interpolation)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if photometric > 0:
        steps.append(v2.ColorJitter(brightness=photometric, contrast=photometric, saturation=photometric))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if lighting > 0:
        steps.append(Lighting(lighting))
    steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return v2.Compose(steps)


def eval_transform(
    size: int, mean: Sequence[float], std: Sequence[float], crop_pct: float = 0.875
) -> Callable[[Any], torch.Tensor]:
    """PIL image -> normalised float tensor (3, size, size): shorter side to size / crop_pct, the centre `size`
    square; the very crop that `googlenet predict` and `evaluate --crops 1` cut (`CentreCrop`)."""
    return CentreCrop(size, mean, std, crop_pct)


def transforms_for(meta: ModelMeta) -> Callable[[Any], torch.Tensor]:
    """The test-time preprocessing that weights expect, from their metadata record (input size, crop fraction,
    mean/std): a PIL image -> the normalised (3, S, S) tensor the model takes, exactly as `predict` and
    `evaluate` prepare it (as torchvision's `weights.transforms()`)."""
    return CentreCrop(meta.input_size, meta.mean, meta.std, meta.crop_pct, meta.resize)
