"""MultiBox (Erhan et al. 2014; Szegedy et al. 2014, arXiv 1412.1441): an Inception network that predicts K
boxes, as offsets to K priors found by k-means over training boxes, and K confidences, trained with the
matching loss. Its top boxes after NMS are the paper's extra 200 proposals per image."""

from __future__ import annotations

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import nms

from googlenet.model import GoogLeNet


def kmeans_priors(boxes: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """K prior boxes: k-means centres of training boxes in normalised (x1, y1, x2, y2) coordinates."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) < k:
        raise ValueError(f"k-means needs at least {k} training boxes, got {len(boxes)}")
    centres, _ = kmeans2(boxes, k, minit="++", seed=seed)
    return centres.astype(np.float32)


class MultiBox(nn.Module):
    """Inception backbone, then one linear layer for the K boxes' offsets to their priors and one for their
    confidence logits. Boxes are in coordinates normalised to [0, 1] by the input's width and height."""

    def __init__(self, backbone: GoogLeNet, priors: torch.Tensor) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("priors", torch.as_tensor(priors, dtype=torch.float32).reshape(-1, 4))
        k = len(self.priors)
        self.offsets = nn.Linear(backbone.num_features, 4 * k)
        self.confidence = nn.Linear(backbone.num_features, k)
        nn.init.zeros_(self.offsets.weight)  # start from the priors themselves
        nn.init.zeros_(self.offsets.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes (N, K, 4) normalised x1 y1 x2 y2, confidence logits (N, K))."""
        features = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
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


def proposals(
    model: MultiBox, images: torch.Tensor, sizes: list[tuple[int, int]], top: int = 200, iou: float = 0.7
) -> list[np.ndarray]:
    """Each image's `top` boxes by confidence after NMS at `iou`, in its pixels (x1, y1, x2, y2);
    `sizes` are the images' (height, width) before resizing to the network input."""
    with torch.no_grad():
        boxes, logits = model(images)
    found = []
    for b, z, (height, width) in zip(boxes, logits, sizes, strict=True):
        scale = b.new_tensor([width, height, width, height])
        pixels = (b.clamp(0, 1) * scale).float()
        valid = (pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])
        pixels, scores = pixels[valid], z[valid].sigmoid()
        keep = nms(pixels, scores, iou)[:top]
        found.append(pixels[keep].cpu().numpy())
    return found
