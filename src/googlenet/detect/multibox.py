"""MultiBox (Erhan et al. 2014; Szegedy et al. 2014, arXiv 1412.1441): an Inception network that predicts K
boxes, as offsets to K priors found by k-means over training boxes, and K confidences, trained with the
matching loss. Its top boxes after NMS are the paper's extra 200 proposals per image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision import tv_tensors
from torchvision.ops import nms
from torchvision.transforms import v2

from googlenet.model import GoogLeNet, ModelMeta, MultiBoxHead, build_model, load_model
from googlenet.model.variants import TaskWeights, register_task_weights


def kmeans_priors(boxes: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """K prior boxes: k-means centres of training boxes in normalised (x1, y1, x2, y2) coordinates."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) < k:
        raise ValueError(f"k-means needs at least {k} training boxes, got {len(boxes)}")
    centres, _ = kmeans2(boxes, k, minit="++", seed=seed)
    return centres.astype(np.float32)


class MultiBox(nn.Module):
    """Inception backbone, then fully connected layers for the K boxes' offsets to their priors and for their
    confidence logits. Boxes are in coordinates normalised to [0, 1] by the input's width and height.

    With `grid` > 0 the head reads the last Inception feature map pooled to grid x grid and reduced to 128
    channels by a 1x1 convolution (as Erhan et al.'s fully connected layers read AlexNet's spatial map); with
    `grid` = 0 it reads the classifier's globally pooled vector, which keeps little of where objects are."""

    priors: torch.Tensor
    reduce: nn.Sequential | None
    meta: ModelMeta  # the metadata record, set where MultiBox weights are saved or loaded

    def __init__(self, backbone: GoogLeNet, priors: torch.Tensor, grid: int = 4) -> None:
        super().__init__()
        backbone.linear = nn.Identity()  # the classifier is unused: keep DDP from waiting for its gradients
        self.backbone = backbone
        self.register_buffer("priors", torch.as_tensor(priors, dtype=torch.float32).reshape(-1, 4))
        k, self.grid = len(self.priors), grid
        if grid > 0:
            self.reduce = nn.Sequential(
                nn.AdaptiveAvgPool2d(grid), nn.Conv2d(backbone.num_features, 128, 1), nn.ReLU(inplace=True)
            )
            width = 128 * grid * grid
        else:
            self.reduce, width = None, backbone.num_features
        self.offsets = nn.Linear(width, 4 * k)
        self.confidence = nn.Linear(width, k)
        nn.init.zeros_(self.offsets.weight)  # start from the priors themselves
        nn.init.zeros_(self.offsets.bias)

    @property
    def head(self) -> MultiBoxHead:
        """The MultiBox settings of its weights' record (priors, top, NMS, grid, tiles)."""
        return cast(MultiBoxHead, self.meta.head)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes (N, K, 4) normalised x1 y1 x2 y2, confidence logits (N, K))."""
        features = self.backbone.forward_features(x)
        if self.reduce is None:
            features = self.backbone.forward_head(features, pre_logits=True)
        else:
            features = self.backbone.dropout(torch.flatten(self.reduce(features), 1))
        boxes = self.priors + self.offsets(features).view(len(x), -1, 4)
        return boxes, self.confidence(features)


def match(boxes: torch.Tensor, logits: torch.Tensor, truths: torch.Tensor, alpha: float = 0.3) -> np.ndarray:
    """The assignment x that minimises the matching loss for one image: (K,) index of the ground truth each
    prediction is matched to, -1 for none (Hungarian algorithm, scipy)."""
    assigned = np.full(len(boxes), -1)
    if len(truths) == 0:
        return assigned
    with torch.no_grad():
        cost = alpha / 2 * torch.cdist(boxes, truths).square()  # (K, M)
        cost = cost - nn.functional.logsigmoid(logits)[:, None] + nn.functional.logsigmoid(-logits)[:, None]
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    assigned[rows] = cols
    return assigned


def matching_loss(
    boxes: torch.Tensor, logits: torch.Tensor, truths: list[torch.Tensor], alpha: float = 0.3
) -> torch.Tensor:
    """Mean over images of  alpha/2 sum x_ij ||l_i - g_j||^2 - sum x_ij log c_i - sum_i (1 - sum_j x_ij) log(1 - c_i)
    with c = sigmoid(logits) and x the best matching (`match`)."""
    total = boxes.new_zeros(())
    for pred, z, g in zip(boxes, logits, truths, strict=True):
        assigned = torch.as_tensor(match(pred, z, g, alpha), device=pred.device)
        hit = assigned >= 0
        target = hit.float()
        total = total + nn.functional.binary_cross_entropy_with_logits(z, target, reduction="sum")
        if hit.any():
            total = total + alpha / 2 * (pred[hit] - g[assigned[hit]]).square().sum()
    return total / len(boxes)


def _clipped(boxes: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised boxes clipped to their image and their confidences, empty boxes dropped."""
    clipped = boxes.float().clamp(0, 1)
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped[valid], logits.float()[valid].sigmoid()


def top_boxes(boxes: torch.Tensor, logits: torch.Tensor, top: int = 200, iou: float = 0.7) -> torch.Tensor:
    """One image's predictions -> its `top` boxes by confidence after NMS at `iou`, clipped to the image, in
    normalised coordinates (NMS gives the same result there as in pixels: scaling x and y keeps IoU)."""
    clipped, scores = _clipped(boxes, logits)
    return clipped[nms(clipped, scores, iou)[:top]]


def views(width: int, height: int, tiles: int = 1) -> list[tuple[int, int, int, int]]:
    """The image itself and, for `tiles` > 1, a tiles x tiles grid of crops each 2 / (tiles + 1) of the image's
    width and height, neighbours overlapping by half (3: nine crops of half the size, objects seen 2x larger)."""
    found = [(0, 0, width, height)]
    if tiles > 1:
        w, h = round(2 * width / (tiles + 1)), round(2 * height / (tiles + 1))
        for j in range(tiles):
            for i in range(tiles):
                x, y = round((width - w) * i / (tiles - 1)), round((height - h) * j / (tiles - 1))
                found.append((x, y, x + w, y + h))
    return found


def tiles_of(model: MultiBox, tiles: int | None = None) -> int:
    """`tiles` if given, else the tiling the MultiBox model was trained to propose with (multibox.tiles)."""
    return tiles or model.head.tiles


def image_proposals(
    model: MultiBox, image: Any, transform: BoxTransform, top: int = 200, iou: float = 0.7, tiles: int = 1
) -> np.ndarray:
    """One PIL image's proposals in pixels: MultiBox on the whole image and on its `views` tiles, every view's
    boxes mapped back to the image, then NMS at `iou` and the `top` by confidence over all of them."""
    from googlenet.data.detection import Annotation

    crops = views(image.width, image.height, tiles)
    device = next(model.parameters()).device
    batch = torch.stack([transform(image.crop(v), Annotation("", v[2] - v[0], v[3] - v[1]))[0] for v in crops])
    with torch.no_grad():
        boxes, logits = model(batch.to(device))
    found, scores = [], []
    for b, z, (x1, y1, x2, y2) in zip(boxes, logits, crops, strict=True):
        clipped, confidence = _clipped(b, z)
        found.append(clipped.cpu() * torch.tensor([x2 - x1, y2 - y1] * 2) + torch.tensor([x1, y1] * 2))
        scores.append(confidence.cpu())
    found_t, scores_t = torch.cat(found), torch.cat(scores)
    return found_t[nms(found_t, scores_t, iou)[:top]].numpy()


class BoxTransform:
    """(PIL image, Annotation) -> (normalised image tensor (3, S, S), boxes (N, 4) normalised to [0, 1]).

    The whole image is resized to S x S (anisotropically, as R-CNN warps); in training, random horizontal
    flips (the boxes follow, torchvision.transforms.v2 with tv_tensors.BoundingBoxes) and photometric jitter.
    """

    def __init__(self, size: int, mean, std, train: bool, photometric: float = 0.0, hflip: bool = True) -> None:
        steps = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
        if train and hflip:
            steps.append(v2.RandomHorizontalFlip())
        if train and photometric > 0:
            steps.append(v2.ColorJitter(brightness=photometric, contrast=photometric, saturation=photometric))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
        self.size, self.pipeline = size, v2.Compose(steps)

    def __call__(self, image, annotation) -> tuple[torch.Tensor, torch.Tensor]:
        boxes = tv_tensors.BoundingBoxes(
            annotation.boxes, format="XYXY", canvas_size=(annotation.height, annotation.width)
        )
        pixels, boxes = self.pipeline(image, boxes)
        return pixels, boxes.as_subclass(torch.Tensor) / self.size


class MultiBoxProposer:
    """A trained MultiBox model as a proposer: one decoded RGB image -> its top boxes in pixels, from the whole
    image and `tiles` x `tiles` crops (default: the tiling the model was trained to propose with)."""

    parallel = False  # the network runs in this process, batched over the views of one image

    def __init__(self, model: MultiBox, tiles: int | None = None, cache_name: str = "multibox") -> None:
        meta = model.meta
        self.model, self.tiles, self.cache_name = model, tiles_of(model, tiles), cache_name
        self.transform = BoxTransform(meta.input_size, meta.mean, meta.std, train=False)

    @classmethod
    def load(cls, path: str | os.PathLike, tiles: int | None = None) -> MultiBoxProposer:
        """From MultiBox weights; proposals are cached per weights file and tiling."""
        model = load_multibox(path)
        tiles = tiles_of(model, tiles)
        name = f"multibox-{Path(path).resolve().parent.name}" + (f"-tiles{tiles}" if tiles > 1 else "")
        return cls(model, tiles, name)

    def __call__(self, image: Any) -> np.ndarray:
        head = self.model.head
        return image_proposals(self.model, image, self.transform, head.top, head.nms, self.tiles)


def _from_weights(state: dict[str, torch.Tensor], meta: ModelMeta) -> MultiBox:
    """A MultiBox network rebuilt from its weights and metadata record (for `load_model`)."""
    backbone = build_model(meta.variant, num_classes=meta.num_classes, aux=False, **meta.options)
    model = MultiBox(backbone, state["priors"], cast(MultiBoxHead, meta.head).grid)
    model.load_state_dict(state)
    model.meta = meta
    return model


register_task_weights(
    "multibox", TaskWeights("MultiBox weights (train them with `googlenet detect train-multibox`)", _from_weights)
)


def load_multibox(path: str | os.PathLike) -> MultiBox:
    """A MultiBox model from its .safetensors file (as `googlenet detect train-multibox` writes it)."""
    return cast(MultiBox, load_model(path, task="multibox")).eval()
