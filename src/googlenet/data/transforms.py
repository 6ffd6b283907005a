"""The paper's training augmentation (section 6: per image in the workers, per batch on the device) and the
evaluation transform."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from googlenet.data.images import EncodedImage, decode_crop, image_from_bytes, jpeg_size, to_rgb
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


class Draw(NamedTuple):
    """One training image's random choices: the crop (in the full-size image), the interpolation, the flip, and the
    photometric distortions' order (0 brightness, 1 contrast, 2 saturation), factors and lighting shift."""

    top: int
    left: int
    height: int
    width: int
    interpolation: InterpolationMode
    flip: bool
    order: tuple[int, int, int]
    factors: tuple[float, float, float]
    shift: tuple[float, float, float]

    def colour(self) -> torch.Tensor:
        """The per-batch part's inputs: order, factors and shift as 9 floats."""
        return torch.tensor([*self.order, *self.factors, *self.shift], dtype=torch.float32)


def dct_reduction(width: int, height: int, size: int) -> int:
    """The largest JPEG DCT scaling (1, 2, 4 or 8) after which a `width` x `height` crop still has at least `size`
    pixels a side: decoding at that scale loses nothing that the resize to `size` would keep."""
    return next((r for r in (8, 4, 2) if width >= r * size and height >= r * size), 1)


def _resize(crop: np.ndarray, size: int, interpolation: InterpolationMode, flip: bool) -> torch.Tensor:
    """An (H, W, 3) uint8 crop as a (3, size, size) uint8 tensor, flipped left to right with `flip`, with PIL's
    filters as the paper's four: bilinear and bicubic (antialiased) by torchvision's uint8 kernels, which compute
    PIL's to within rounding at a fraction of its time; area by PIL's BOX itself (torchvision has no tensor BOX,
    OpenCV's area weighs pixels otherwise); nearest by OpenCV's INTER_NEAREST_EXACT, PIL's very pixels. The pixels
    are interleaved until OpenCV's SIMD kernels flip them and split them into planes (a third of the time of
    torch's permuted copy)."""
    if interpolation == InterpolationMode.NEAREST:
        resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    elif interpolation == InterpolationMode.BOX:
        resized = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.BOX))
    else:
        pixels = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)  # channels-last: the fast kernels
        out = v2.functional.resize(pixels, [size, size], interpolation=interpolation, antialias=True)
        resized = out.permute(1, 2, 0).numpy()  # interleaved again
    if flip:
        resized = cv2.flip(resized, 1)
    planes = torch.empty((3, size, size), dtype=torch.uint8)
    cv2.split(np.ascontiguousarray(resized), [p.numpy() for p in planes])
    return planes


# Where a JPEG is decoded at reduced scale: a 1600x1200 crop to 224 from a 1/4 decode differs from the full decode's
# by 1.0 level of 255 on average under bilinear, 0.7 under bicubic, but 5.0 under area and 7.2 under nearest
# (more than area and bilinear differ from each other, 2.5): those two decode in full.
_SMOOTH = (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)
_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma), as PIL's "L"


def photometric(images: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Howard's distortions on a float batch (N, 3, H, W) in [0, 1], each image in its own `order` (N, 3: 0
    brightness, 1 contrast, 2 saturation) with its own `factors` (N, 3): each step blends the image with black,
    with its mean gray, or with its gray image, and clamps to [0, 1] (torchvision's adjust_brightness,
    adjust_contrast and adjust_saturation, for a whole batch at once)."""
    for k in range(3):
        op = order[:, k].view(-1, 1, 1, 1)
        factor = factors.gather(1, order[:, k : k + 1]).view(-1, 1, 1, 1)
        gray = images[:, 0:1] * _GRAY[0]
        gray.add_(images[:, 1:2], alpha=_GRAY[1]).add_(images[:, 2:3], alpha=_GRAY[2])
        # what the image is blended with: black (brightness), its mean gray (contrast), its gray (saturation)
        mean = gray.mean((2, 3), keepdim=True)
        blend = gray.mul_((op == 2) * (1 - factor)).add_(mean * ((op == 1) * (1 - factor)))
        images = images.mul_(factor).add_(blend).clamp_(0, 1)
    return images


class TrainAugmentation:
    """The paper's training augmentation (section 6), each part switchable, in two halves.

    Per image, in the DataLoader workers (`__call__`): a random-sized crop (area `crop_scale`, aspect
    `crop_ratio`, drawn as torchvision's RandomResizedCrop draws it), a JPEG decoded only at the scale that crop
    needs (`dct_reduction`), resized to `size` with an interpolation drawn uniformly from the paper's four, a
    horizontal flip; kept as uint8. The photometric factors are drawn here too, so that every random choice
    comes from the per-sample generator (`Augmented`) and resume and DDP stay exact.

    Per batch, on the training device (`on_device`): to float, Howard's photometric distortions (brightness,
    contrast and colour factors in [1 - photometric, 1 + photometric], in an order drawn per image, as
    ColorJitter does), AlexNet's PCA lighting noise, mean subtraction and division by `std`.
    """

    def __init__(
        self,
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
    ) -> None:
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)
        self.crop = v2.RandomResizedCrop(size, scale=tuple(crop_scale), ratio=tuple(crop_ratio))
        self.random_resized_crop, self.hflip = random_resized_crop, hflip
        self.interpolations = PAPER_INTERPOLATIONS if random_interpolation else (InterpolationMode.BILINEAR,)
        self.photometric, self.lighting = photometric, lighting
        self._eigvec, self._eigval = torch.tensor(EIGVEC), torch.tensor(EIGVAL)

    def draw(self, width: int, height: int) -> Draw:
        """The random choices for a `width` x `height` image, from torch's global generator."""
        interpolation = self.interpolations[int(torch.randint(len(self.interpolations), ()))]
        box = (0, 0, height, width)
        if self.random_resized_crop:  # a stride-0 stand-in of the image's shape: the draw needs only its size
            crop = self.crop.make_params([torch.empty((1, 1, 1), dtype=torch.uint8).expand(3, height, width)])
            box = (crop["top"], crop["left"], crop["height"], crop["width"])
        flip = self.hflip and bool(torch.rand(()) < 0.5)
        order, factors, shift = (0, 1, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
        if self.photometric > 0:
            order = tuple(torch.randperm(3).tolist())
            factors = tuple(torch.empty(3).uniform_(1 - self.photometric, 1 + self.photometric).tolist())
        if self.lighting > 0:
            alpha = torch.randn(3) * self.lighting
            shift = tuple((self._eigvec @ (alpha * self._eigval)).tolist())
        return Draw(*box, interpolation, flip, order, factors, shift)

    def __call__(self, image: Image.Image | EncodedImage) -> tuple[torch.Tensor, torch.Tensor]:
        """One image (decoded, or a file's bytes) -> (its (3, size, size) uint8 crop, its 9 colour parameters)."""
        header = jpeg_size(image) if isinstance(image, EncodedImage) else None
        pixels = None
        if header is None:  # decoded already, or another format than JPEG: decoded in full by Pillow
            decoded = image_from_bytes(image.data, image.path) if isinstance(image, EncodedImage) else image
            pixels = np.array(to_rgb(decoded))  # writable, as torch.from_numpy wants
        width, height = header[:2] if header else (pixels.shape[1], pixels.shape[0])  # type: ignore[union-attr]
        d = self.draw(width, height)
        if pixels is None:  # a reduced decode only under the wide antialiased filters, which it changes least
            reduction = dct_reduction(d.width, d.height, self.size) if d.interpolation in _SMOOTH else 1
            crop = decode_crop(image, header, reduction, (d.top, d.left, d.height, d.width))  # type: ignore[arg-type]
        else:
            crop = pixels[d.top : d.top + d.height, d.left : d.left + d.width]
        return _resize(crop, self.size, d.interpolation, d.flip), d.colour()

    def on_device(self, pixels: torch.Tensor, colour: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A batch of the workers' crops (N, 3, S, S uint8) and their colour parameters (N, 9), where they are
        (the training device): the normalised float batch the model takes."""
        images = pixels.to(dtype).mul_(1 / 255)  # in place from here on: memory bandwidth is the cost
        colour = colour.to(images)
        if self.photometric > 0:
            images = photometric(images, colour[:, :3].long(), colour[:, 3:6])
        if self.lighting > 0:
            images = images.add_(colour[:, 6:9, None, None]).clamp_(0, 1)
        mean, std = (images.new_tensor(v).view(1, 3, 1, 1) for v in (self.mean, self.std))
        return images.sub_(mean).div_(std)

    def single(self, image: Image.Image | EncodedImage) -> torch.Tensor:
        """Both halves on one image: its normalised (3, size, size) float tensor, as training sees it."""
        pixels, colour = self(image)
        return self.on_device(pixels[None], colour[None])[0]


# The name the training code and users call: it builds the two halves (per image in the workers, per batch on the
# device) from the same arguments.
train_transform = TrainAugmentation


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
