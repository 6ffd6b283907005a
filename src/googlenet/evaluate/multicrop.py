"""Multi-crop and ensemble testing (paper section 7): softmax probabilities averaged over the crops of an
image and over all the models, then top-1 accuracy and top-5 error."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence, Sized
from typing import Any, cast

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision.transforms.v2 import functional as F

from googlenet.data.images import UnreadableImage, image_files, load_image
from googlenet.data.loaders import ImageDataset, eval_loader
from googlenet.data.multicrop import CropSpec
from googlenet.evaluate.driver import inference_on_dataset, progress_bar, resolve_device
from googlenet.evaluate.metrics import topk_correct
from googlenet.evaluate.spec import EvaluationSpec
from googlenet.model import Classifier, load_for_inference

POOLS = ("mean", "max")


class Cropped(Dataset):
    """(PIL image, label) -> (crops, crop weights, label), for DataLoader workers; None for an unreadable image
    (warned about, naming the file), which `collate` leaves out."""

    def __init__(self, dataset: Sized, spec: CropSpec) -> None:
        self.dataset, self.spec = cast(Dataset, dataset), spec

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        try:
            image, label = self.dataset[index]
        except (UnreadableImage, FileNotFoundError) as err:
            print(f"warning: skipped an unreadable image: {err}", file=sys.stderr)
            return None
        return *self.spec(image), label


def collate(items: list[tuple[torch.Tensor, torch.Tensor, int] | None]) -> tuple[torch.Tensor, ...] | None:
    """Images with different crop counts in one batch: crops and weights concatenated, `owner` maps each crop
    to its image. Unreadable images (None) are left out; a batch of nothing else is None."""
    read = [item for item in items if item is not None]
    if not read:
        return None
    counts = torch.tensor([len(w) for _, w, _ in read])
    owner = torch.repeat_interleave(torch.arange(len(read)), counts)
    crops = torch.cat([c for c, _, _ in read])
    weights = torch.cat([w for _, w, _ in read])
    return crops, weights, owner, torch.tensor([label for _, _, label in read])


def pool_crops(probs: torch.Tensor, weights: torch.Tensor, owner: torch.Tensor, images: int, pool: str) -> torch.Tensor:
    """Per-crop probabilities (n, classes) -> per-image (images, classes): weighted mean, or max over crops."""
    if pool == "mean":
        total = probs.new_zeros(images, probs.shape[1]).index_add_(0, owner, probs * weights[:, None])
        return total / probs.new_zeros(images).index_add_(0, owner, weights)[:, None]
    if pool == "max":
        start = probs.new_full((images, probs.shape[1]), -1.0)
        return start.scatter_reduce_(0, owner[:, None].expand_as(probs), probs, "amax")
    raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")


class CropEnsemble:
    """The models at test time: a batch from `collate` -> each model's softmax probabilities pooled over each
    image's crops, (models, images, classes) on the CPU. Evaluators (`CropScores`) only collect them."""

    def __init__(
        self, models: Sequence[Classifier], pool: str = "mean", device: str | torch.device = "cpu", chunk: int = 256
    ) -> None:
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")
        self.models = [m.to(device).eval() for m in models]
        self.pool, self.device, self.chunk = pool, torch.device(device), chunk

    @torch.inference_mode()
    def __call__(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        crops, weights, owner, targets = batch
        crops = F.to_dtype(crops.to(self.device, non_blocking=True), torch.float32, scale=True)
        weights, owner = weights.to(self.device), owner.to(self.device)
        pooled = []
        for model in self.models:
            x = F.normalize(crops, list(model.meta.mean), list(model.meta.std))
            probs = torch.cat([model(part).float().softmax(dim=1) for part in x.split(self.chunk)])
            pooled.append(pool_crops(probs, weights, owner, len(targets), self.pool).cpu())
        return torch.stack(pooled)


class CropScores:
    """Evaluator in the reset / process / evaluate style: each model's crop-pooled probabilities per image are
    kept, so ensembles of any subset of the models can be scored afterwards."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.probs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def process(self, inputs: tuple[torch.Tensor, ...], outputs: torch.Tensor) -> None:
        """One batch from `collate` and the ensemble's (models, images, classes) probabilities for it."""
        self.probs.append(outputs)
        self.targets.append(inputs[3])

    @property
    def images(self) -> int:
        return sum(len(t) for t in self.targets)

    def model_probs(self) -> torch.Tensor:
        """(models, images, classes) crop-pooled probabilities."""
        return torch.cat(self.probs, dim=1)

    def evaluate(self, members: list[int] | None = None) -> dict[str, Any]:
        """Top-1 / top-5 accuracy (fractions) of the ensemble of `members` (default: all models)."""
        probs = self.model_probs()
        return scores(probs[members if members is not None else slice(None)].mean(dim=0), torch.cat(self.targets))


def scores(probs: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """Top-1 accuracy and top-5 accuracy and error as fractions of the images."""
    hits = topk_correct(probs, targets, (1, 5))
    n = len(targets)
    # Errors as (n - hits) / n, not 1 - accuracy: the same fraction without float noise (0.09, not 0.08999...).
    return {"top1": hits[1] / n, "top5": hits[5] / n, "top1_error": (n - hits[1]) / n, "top5_error": (n - hits[5]) / n}


def check_classes(models: Sequence[Classifier], classes: list[str] | None) -> None:
    """The models must agree with each other and with the dataset's class list."""
    names = {tuple(m.meta.class_names or ()) or m.meta.num_classes for m in models}
    if len(names) > 1:
        raise ValueError("the models were trained on different classes; an ensemble needs the same classes")
    model = models[0]
    if classes is not None and model.meta.class_names and list(model.meta.class_names) != list(classes):
        raise ValueError(f"the data's {len(classes)} classes do not match the model's {model.meta.num_classes}")
    if classes is not None and len(classes) != model.meta.num_classes:
        raise ValueError(f"the data has {len(classes)} classes, the model {model.meta.num_classes}")


def run(
    ensemble: CropEnsemble,
    dataset: Sized,
    spec: CropSpec,
    limit: int = 0,
    batch_size: int = 32,
    workers: int = 1,
    progress: bool = True,
) -> tuple[CropScores, float]:
    """The first `limit` images (0 = all) of `dataset`, cut by `spec`, through `ensemble`: the collected
    `CropScores` and the seconds taken."""
    count = min(limit, len(dataset)) if limit else len(dataset)
    images = Subset(cast(Dataset, dataset), range(count)) if limit else dataset
    loader = eval_loader(
        Cropped(images, spec), batch_size, 0, 1, workers, ensemble.device.type == "cuda", collate_fn=collate
    )
    collected = CropScores()
    label = f"{len(ensemble.models)} model(s) x {spec.crops} crop(s)"
    with progress_bar(count, label, progress) as bar:
        _, seconds = inference_on_dataset(ensemble, loader, collected, lambda batch: len(batch[3]), bar)
    if not collected.targets:
        raise ValueError(f"none of the {count} images could be read (see the warnings above)")
    return collected, seconds


def score(
    models: Sequence[Classifier],
    dataset: ImageDataset,
    spec: EvaluationSpec,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Top-1 / top-5 (fractions) of the ensemble of `models` (loaded from `spec.checkpoints`) on the first
    `spec.limit` images of `dataset` with `spec.crops` crops per image, with each model's own scores, the images
    read and the seconds taken: the record of `googlenet evaluate`."""
    ensemble = CropEnsemble(models, spec.pool, device)
    crops, limit = CropSpec.of(models, spec.crops), spec.limit
    collected, seconds = run(ensemble, dataset, crops, limit, spec.batch_size, spec.workers, progress)
    return {
        **collected.evaluate(),
        "crops": spec.crops,
        "pool": spec.pool,
        "models": len(models),
        "images": collected.images,
        "unreadable": min(limit or len(dataset), len(dataset)) - collected.images,
        "per_model": [{"checkpoint": c, **collected.evaluate([i])} for i, c in enumerate(spec.checkpoints)],
        "seconds": round(seconds, 2),
    }


def predict(
    checkpoints: list[str],
    images: list[str],
    crops: int = 1,
    topk: int = 5,
    device: str = "auto",
    optimize: bool = True,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """`googlenet predict`: the `topk` classes and probabilities of each image file, from one model or the
    ensemble of `checkpoints`. A folder in `images` stands for the image files under it (`image_files`). A file
    that cannot be read gets `{"image": path, "error": one line}` in its place; the others are answered."""
    if topk < 1:
        raise ValueError("--topk must be at least 1")
    files = image_files(images)
    if not files:
        raise ValueError(f"no image files in {', '.join(images)} (Pillow's endings: .jpg, .png, .bmp, .tif, ...)")
    models = [load_for_inference(c, optimize, precision) for c in checkpoints]
    loaded: list[Image.Image | str] = []  # each file's picture, or why it cannot be read (one line)
    for path in files:
        try:
            loaded.append(load_image(path))
        except (OSError, ValueError) as err:  # missing, unreadable, damaged, not an image
            loaded.append(str(err))
    pictures = [picture for picture in loaded if isinstance(picture, Image.Image)]
    answers = iter(classify(models, pictures, crops, topk, resolve_device(device)) if pictures else [])
    return [
        {**next(answers), "image": str(path)}
        if isinstance(picture, Image.Image)
        else {"image": str(path), "error": picture}
        for path, picture in zip(files, loaded, strict=True)
    ]


def classify(
    models: Classifier | Sequence[Classifier],
    images: Sequence[Image.Image | str | os.PathLike],
    crops: int = 1,
    topk: int = 5,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """Each image's `topk` class names and probabilities from a model or an ensemble (softmax averaged over
    models and `crops` crops), preprocessed as `googlenet predict` and `evaluate` do (`transforms_for`).
    `images`: decoded PIL images or files; `device`: where to run (default: where the first model is)."""
    models = [models] if not isinstance(models, Sequence) else list(models)
    check_classes(models, None)
    pictures = [image if isinstance(image, Image.Image) else load_image(image) for image in images]
    if device is None:  # where the model's weights are (an ONNX file has none here: the CPU)
        first = models[0]
        param = next(first.parameters(), None) if isinstance(first, torch.nn.Module) else None
        device = param.device if param is not None else "cpu"
    spec, ensemble = CropSpec.of(models, crops), CropEnsemble(models, "mean", device)
    probs = []
    for picture in pictures:  # one image a batch: (crops, weights, owner, target)
        cut, weights = spec(picture)
        probs.append(ensemble((cut, weights, torch.zeros(len(weights), dtype=torch.long), torch.tensor([-1])))[:, 0])
    names = models[0].meta.class_names or [str(i) for i in range(models[0].meta.num_classes)]
    results = []
    for k, (image, mean) in enumerate(zip(images, torch.stack(probs, dim=1).mean(dim=0), strict=True)):
        top = mean.topk(min(topk, len(mean)))
        predictions = [
            {"class": names[i], "index": int(i), "probability": float(p)}
            for p, i in zip(top.values, top.indices, strict=True)
        ]
        results.append({"image": k if isinstance(image, Image.Image) else str(image), "predictions": predictions})
    return results
