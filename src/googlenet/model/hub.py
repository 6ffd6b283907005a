"""Published weights by name, in torch.hub's cache: `bvlc` (BVLC's Caffe GoogLeNet, the paper's network,
sha1 checked) and `torchvision` (torchvision's IMAGENET1K_V1 in the googlenet_tv layout, through torchvision's
own download and hash check). Offline, one line says where to put the file."""

from __future__ import annotations

import os
from pathlib import Path

NAMES = ("bvlc", "torchvision")
BVLC_URL = "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
BVLC_FILE = "bvlc_googlenet.caffemodel"
TORCHVISION_FILE = "googlenet_tv-imagenet1k_v1.safetensors"


def _checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def locate(path: str | os.PathLike) -> Path:
    """`path` itself, unless it is a name of published weights and no such file exists here: then that
    file in torch.hub's cache, downloaded (and checked) where it is missing."""
    if str(path) not in NAMES or Path(path).exists():
        return Path(path)
    return _bvlc() if str(path) == "bvlc" else _torchvision()


def _bvlc() -> Path:
    import torch

    from googlenet.model.caffe import BVLC_SHA1, sha1

    target = _checkpoints() / BVLC_FILE
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(BVLC_URL, str(target), progress=True)
        except Exception as err:  # no network, a proxy, a full disk: the user is told the same thing
            raise FileNotFoundError(
                f"could not download BVLC's GoogLeNet ({type(err).__name__}); put {BVLC_FILE} ({BVLC_URL}) at {target}"
            ) from None
    digest = sha1(target)
    if digest != BVLC_SHA1:
        raise ValueError(f"{target} has sha1 {digest}, not BVLC's {BVLC_SHA1}: delete it and download it again")
    return target


def _torchvision() -> Path:
    """torchvision's googlenet weights converted once into our .safetensors (the googlenet_tv layout with
    transform_input, ImageNet's class names and normalisation in the record)."""
    import dataclasses

    from torchvision.models import GoogLeNet_Weights

    from googlenet.model.caffe import imagenet_wnids
    from googlenet.model.variants import build_model
    from googlenet.model.weights import save_weights, torchvision_to_googlenet

    target = _checkpoints() / TORCHVISION_FILE
    if target.is_file():
        return target
    weights = GoogLeNet_Weights.IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as err:
        raise FileNotFoundError(
            f"could not download torchvision's googlenet weights ({type(err).__name__}); put "
            f"{Path(weights.url).name} ({weights.url}) in {_checkpoints()}"
        ) from None
    model = build_model("googlenet_tv", transform_input=True, aux=False)
    model.load_state_dict({k: v for k, v in torchvision_to_googlenet(state).items() if not k.startswith("aux")})
    model.meta = dataclasses.replace(
        model.meta,
        class_names=list(weights.meta["categories"]),
        class_ids=imagenet_wnids(),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        options={**model.meta.options, "transform_input": True},
        metrics={"imagenet-1k/val (torchvision's docs)": {"top1": 0.69778, "top5": 0.8953}},
    )
    return save_weights(model, target)
