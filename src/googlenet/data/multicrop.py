"""Test-time crops (paper section 7): 1 centre crop (2: with its mirror), torchvision's 10 crops, the paper's 144;
`CropSpec` cuts an image into them for a model's input size.

A crop is described by a `CropBox` (where it lies after the image is resized), so the geometry can be read,
tested and de-duplicated apart from the pixels; `multi_crop` cuts the boxes out of one image.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

if TYPE_CHECKING:
    from googlenet.model import Classifier

CROP_COUNTS = (1, 2, 10, 144)
PAPER_SCALES = (256, 288, 320, 352)  # shorter side for a 224 input (section 7)


@dataclass(frozen=True)
class CropBox:
    """One crop: resize the image to `resized` (height, width), take the region (top, left, height, width),
    resize that region to the input size if it is not already, and mirror it if `mirror`."""

    resized: tuple[int, int]
    top: int
    left: int
    height: int
    width: int
    mirror: bool = False


def _resized(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(height, width) with the shorter side set to `shorter`, the longer one as torchvision's Resize sets it."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def _centre(extent: int, size: int) -> int:
    return round((extent - size) / 2.0)  # torchvision's center_crop offset


def _five(resized: tuple[int, int], top: int, left: int, height: int, width: int, size: int) -> list[CropBox]:
    """The 4 corner crops and the centre crop of `size` inside the region (top, left, height, width)."""
    bottom, right = height - size, width - size
    offsets = [(0, 0), (0, right), (bottom, 0), (bottom, right), (_centre(height, size), _centre(width, size))]
    return [CropBox(resized, top + dy, left + dx, size, size) for dy, dx in offsets]  # five_crop's order


def _with_mirrors(boxes: list[CropBox]) -> list[CropBox]:
    return [m for b in boxes for m in (b, CropBox(b.resized, b.top, b.left, b.height, b.width, True))]


RESIZES = ("shorter", "warp")


def centre_box(height: int, width: int, size: int, crop_pct: float = 0.875, resize: str = "shorter") -> list[CropBox]:
    """One crop: the shorter side resized to size / crop_pct (the usual evaluation), or with `resize` "warp"
    both sides (Caffe's: BVLC evaluated on images warped to 256x256), then the centre `size` square."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {', '.join(RESIZES)}, not {resize!r}")
    side = round(size / crop_pct)
    rh, rw = (side, side) if resize == "warp" else _resized(height, width, side)
    return [CropBox((rh, rw), _centre(rh, size), _centre(rw, size), size, size)]


def ten_boxes(height: int, width: int, size: int) -> list[CropBox]:
    """torchvision's TenCrop, in its order: shorter side resized to 256/224 of `size`; the 4 corners and the
    centre; then the same five cut from the mirrored image (its centre crop can sit one pixel off the first's)."""
    rh, rw = _resized(height, width, round(size * 256 / 224))
    five = _five((rh, rw), 0, 0, rh, rw, size)
    return five + [CropBox(b.resized, b.top, rw - b.left - b.width, b.height, b.width, True) for b in five]


def paper_boxes(height: int, width: int, size: int, scales: tuple[int, ...] = PAPER_SCALES) -> list[CropBox]:
    """The paper's 144 crops: shorter side at each of `scales` (given for 224, scaled to `size`); the left,
    centre and right squares (top, centre, bottom for portrait images); from each square the 4 corner crops,
    the centre crop and the whole square resized; each also mirrored. 4 x 3 x 6 x 2 = 144."""
    boxes = []
    for scale in scales:
        side = round(scale * size / 224)
        rh, rw = _resized(height, width, side)
        if rw >= rh:
            squares = [(0, 0), (0, (rw - side) // 2), (0, rw - side)]
        else:
            squares = [(0, 0), ((rh - side) // 2, 0), (rh - side, 0)]
        for top, left in squares:
            views = [*_five((rh, rw), top, left, side, side, size), CropBox((rh, rw), top, left, side, side)]
            boxes += _with_mirrors(views)
    return boxes


def boxes_for(
    crops: int, height: int, width: int, size: int, crop_pct: float = 0.875, resize: str = "shorter"
) -> list[CropBox]:
    """The crop boxes of one image for 1 (centre), 2 (centre and its mirror), 10 or 144 crops (`resize`: how the
    centre crop's image is resized, see `centre_box`)."""
    if crops in (1, 2):
        centre = centre_box(height, width, size, crop_pct, resize)
        return centre if crops == 1 else _with_mirrors(centre)
    if crops == 10:
        return ten_boxes(height, width, size)
    if crops == 144:
        return paper_boxes(height, width, size)
    raise ValueError(f"crops must be one of {', '.join(map(str, CROP_COUNTS))}, not {crops}")


def unique(boxes: list[CropBox]) -> tuple[list[CropBox], list[int]]:
    """Identical boxes merged, with how often each occurs: on a square image the left, centre and right
    squares coincide, so the 144 crops are 48 distinct ones, each counted 3 times in the average."""
    counts = Counter(boxes)
    return list(counts), list(counts.values())


def multi_crop(image: torch.Tensor, boxes: list[CropBox], size: int) -> torch.Tensor:
    """Cut `boxes` out of one image tensor (C, H, W): a (len(boxes), C, size, size) tensor.

    Resizing is bilinear with antialiasing, as in the evaluation transform.
    """
    resized: dict[tuple[int, int], torch.Tensor] = {}
    crops = []
    for box in boxes:
        if box.resized not in resized:
            resized[box.resized] = F.resize(image, list(box.resized), InterpolationMode.BILINEAR, antialias=True)
        crop = F.crop(resized[box.resized], box.top, box.left, box.height, box.width)
        if (box.height, box.width) != (size, size):
            crop = F.resize(crop, [size, size], InterpolationMode.BILINEAR, antialias=True)
        crops.append(F.horizontal_flip(crop) if box.mirror else crop)
    return torch.stack(crops)


@dataclass
class CropSpec:
    """How each image is cut into crops: 1, 10 or 144 crops of `size` (1 crop: centre of size / crop_pct, after
    resizing the shorter side or, with `resize` "warp", both)."""

    crops: int
    size: int
    crop_pct: float = 0.875
    resize: str = "shorter"

    @classmethod
    def of(cls, models: Sequence[Classifier], crops: int) -> CropSpec:
        """The spec shared by an ensemble's models (they must agree on input size, crop fraction and resize)."""
        sizes = {(m.meta.input_size, m.meta.crop_pct, m.meta.resize) for m in models}
        if len(sizes) > 1:
            raise ValueError(
                f"the models differ in input size / crop fraction / resize {sorted(sizes)}; ensemble like models"
            )
        size, crop_pct, resize = sizes.pop()
        return cls(crops, size, crop_pct, resize)

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """One PIL image -> (its distinct crops as uint8 (n, 3, size, size), how often each one counts)."""
        pixels = F.to_image(image)
        height, width = pixels.shape[-2:]
        boxes, counts = unique(boxes_for(self.crops, height, width, self.size, self.crop_pct, self.resize))
        return multi_crop(pixels, boxes, self.size), torch.tensor(counts, dtype=torch.float32)


class CentreCrop:
    """The one-crop test-time transform: PIL image -> normalised float tensor (3, size, size), the centre crop
    of `CropSpec(1, size, crop_pct)` scaled to [0, 1] and normalised with `mean` and `std`."""

    def __init__(
        self, size: int, mean: Sequence[float], std: Sequence[float], crop_pct: float = 0.875, resize: str = "shorter"
    ) -> None:
        self.spec, self.mean, self.std = CropSpec(1, size, crop_pct, resize), list(mean), list(std)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        crop = self.spec(image)[0][0]
        return F.normalize(F.to_dtype(crop, torch.float32, scale=True), self.mean, self.std)
