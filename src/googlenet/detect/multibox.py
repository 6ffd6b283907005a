"""MultiBox (Erhan et al. 2014; Szegedy et al. 2014, arXiv 1412.1441): an Inception network that predicts K
boxes, as offsets to K priors found by k-means over training boxes, and K confidences, trained with the
matching loss. Its top boxes after NMS are the paper's extra 200 proposals per image."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import box_iou, nms
from torchvision.transforms import v2

from googlenet.model import VARIANTS, GoogLeNet, ModelMeta, build_model, read_task_weights, save_weights
from googlenet.train import distributed
from googlenet.train.config import TrainConfig
from googlenet.train.loop import WEIGHTS, Parts, Run, Task, inference_model


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
    return tiles or (model.meta.head or {}).get("tiles", 1)


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


def collate_boxes(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Images stacked; each image's boxes kept apart (their numbers differ)."""
    return torch.stack([image for image, _ in items]), [boxes for _, boxes in items]


def _normalised_boxes(data) -> np.ndarray:
    sizes = [np.array([a.width, a.height, a.width, a.height], np.float32) for a in data.annotations]
    return np.concatenate([a.boxes / size for a, size in zip(data.annotations, sizes, strict=True)])


class MultiBoxTask(Task):
    """MultiBox training in the shared loop: VOC-layout data, k-means priors from the training boxes, an
    Inception backbone (from `model.weights`, a classification checkpoint, when given), the matching loss;
    evaluated by the loss and the recall at IoU 0.5 of its top boxes after NMS."""

    name = "multibox"
    joint = True
    raw_keys = ("recall",)
    collate = staticmethod(collate_boxes)

    def build(self, cfg: TrainConfig) -> Parts:
        from googlenet.data.detection import VOCDetection

        if cfg.data.dataset != "voc":
            raise ValueError("MultiBox trains on detection data: set data.dataset to voc and data.root")
        if not cfg.data.root:
            raise ValueError("data.root is required: a folder in VOC layout (googlenet data scenes makes one)")
        train_set = VOCDetection(cfg.data.root, cfg.data.train_split).limit(cfg.data.train_subset)
        val_set = VOCDetection(cfg.data.root, cfg.data.val_split).limit(cfg.data.val_subset)
        variant = VARIANTS.get(cfg.model.name)
        if variant is None:
            raise ValueError(f"unknown model.name {cfg.model.name!r}; choose from {', '.join(VARIANTS)}")
        options = dict(width=cfg.model.width, dropout=cfg.model.dropout, aux=False)
        if cfg.model.weights:  # a classification checkpoint: its input scaling comes with it
            backbone = build_model(cfg.model.name, weights=cfg.model.weights, **options)
            variant = backbone.meta
        else:
            backbone = build_model(cfg.model.name, num_classes=len(train_set.classes), **options)
        mean, std = tuple(cfg.data.mean or variant.mean), tuple(cfg.data.std or variant.std)
        priors = kmeans_priors(_normalised_boxes(train_set), cfg.multibox.priors, seed=cfg.run.seed)
        size, a = cfg.model.input_size, cfg.augment
        return Parts(
            MultiBox(backbone, torch.from_numpy(priors), cfg.multibox.grid),
            train_set,
            val_set,
            BoxTransform(size, mean, std, True, a.photometric, a.hflip),
            BoxTransform(size, mean, std, False),
            train_set.classes,
            mean,
            std,
        )

    def loss(self, net: nn.Module, images: torch.Tensor, targets: Any, cfg: TrainConfig) -> tuple[Any, ...]:
        boxes, logits = net(images)
        truths = [t.to(images.device) for t in targets]
        loss = matching_loss(boxes.float(), logits.float(), truths, cfg.multibox.alpha)
        return loss, loss, (boxes, logits)

    def batch_stats(self, output: Any, targets: Any) -> dict[str, float]:
        return {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Dataset, run: Run) -> dict[str, float]:
        """Matching loss and the recall at IoU 0.5 of each image's top boxes after NMS (IoU is the same in
        normalised and in pixel coordinates), summed over all processes."""
        from googlenet.data.loaders import eval_loader

        model.eval()
        cfg = run.cfg
        loader = eval_loader(
            data, run.per_rank_batch, run.ctx.rank, run.ctx.world_size, cfg.data.workers, collate_fn=collate_boxes
        )
        loss_sum = covered = objects = count = 0.0
        for images, truths in loader:
            images = images.to(run.ctx.device, run.dtype)
            boxes, logits = model(images)
            truths = [t.to(run.ctx.device) for t in truths]
            loss_sum += matching_loss(boxes.float(), logits.float(), truths, cfg.multibox.alpha).item() * len(images)
            for b, z, g in zip(boxes, logits, truths, strict=True):
                kept = top_boxes(b, z, cfg.multibox.top, cfg.multibox.nms)
                if len(g) and len(kept):
                    covered += int((box_iou(g, kept).max(dim=1).values >= 0.5).sum())
                objects += len(g)
            count += len(images)
        loss_sum, covered, objects, count = distributed.all_reduce_sum([loss_sum, covered, objects, count], run.ctx)
        return {"loss": loss_sum / count, "recall": 100 * covered / max(objects, 1), "images": int(count)}

    def export(self, run: Run, results: dict[str, Any]) -> None:
        cfg = run.cfg
        model = inference_model(run)
        meta = ModelMeta(
            variant=cfg.model.name,
            num_classes=model.backbone.num_classes,
            options=dict(width=cfg.model.width),
            input_size=cfg.model.input_size,
            mean=run.mean,
            std=run.std,
            class_names=run.classes,
            metrics={f"{cfg.data.root}/{cfg.data.val_split}": results},
            task="multibox",
            head=dict(
                priors=cfg.multibox.priors,
                top=cfg.multibox.top,
                nms=cfg.multibox.nms,
                grid=cfg.multibox.grid,
                tiles=cfg.multibox.tiles,
            ),
        )
        save_weights(model, run.out / WEIGHTS, meta)

    def summary(self, results: dict[str, Any], cfg: TrainConfig) -> str:
        return (
            f"MultiBox on {cfg.data.root} {results['split']}: recall at IoU 0.5 of the top {cfg.multibox.top} "
            f"boxes {results['recall']:.1f}% (raw weights {results['raw_recall']:.1f}%), matching loss "
            f"{results['loss']:.3f}, after {results['step']} steps"
        )


def load_multibox(path: str | os.PathLike) -> MultiBox:
    """A MultiBox model from its .safetensors file (as `googlenet detect train-multibox` writes it)."""
    state, meta = read_task_weights(
        path, "multibox", "MultiBox weights (train them with `googlenet detect train-multibox`)"
    )
    backbone = build_model(meta.variant, num_classes=meta.num_classes, aux=False, **meta.options)
    model = MultiBox(backbone, state["priors"], (meta.head or {}).get("grid", 0))
    model.load_state_dict(state)
    model.meta = meta
    return model.eval()
