"""Our variants in timm's registry, for `timm.create_model("googlenet_paper")` where timm is installed:
googlenet_paper (the paper's network, LRN), googlenet_bn and googlenet_tv. Importing this module registers them
(googlenet does so by itself when timm was imported first; else call googlenet.model.timm_models.register())."""

from __future__ import annotations

from typing import Any

from googlenet.model.googlenet import GoogLeNet
from googlenet.model.variants import build_model

# timm's name -> ours ("googlenet" alone would read as torchvision's port, which ours calls googlenet_tv).
NAMES = {"googlenet_paper": "googlenet", "googlenet_bn": "googlenet_bn", "googlenet_tv": "googlenet_tv"}
_TIMM_ONLY = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")  # create_model's own, not the model's


def create(name: str, pretrained: bool = False, **kwargs: Any) -> GoogLeNet:
    """`build_model(NAMES[name], ...)` from timm's create_model arguments, with timm's `pretrained_cfg` (input
    size, mean/std, crop fraction, interpolation) so that timm.data.resolve_data_config reads the right ones."""
    for key in _TIMM_ONLY:
        kwargs.pop(key, None)
    if kwargs.pop("in_chans", 3) != 3:
        raise ValueError("GoogLeNet takes 3-channel (RGB) images: in_chans must be 3")
    if "drop_rate" in kwargs:
        kwargs["dropout"] = kwargs.pop("drop_rate")
    model = build_model(NAMES[name], pretrained=pretrained, **kwargs)
    meta = model.meta
    model.pretrained_cfg = {
        "input_size": (3, meta.input_size, meta.input_size),
        "mean": tuple(meta.mean),
        "std": tuple(meta.std),
        "crop_pct": meta.crop_pct,
        "interpolation": "bilinear",
        "num_classes": model.num_classes,
        "classifier": "linear",
    }
    return model


def register() -> None:
    """Register every name in NAMES with timm (a no-op without timm)."""
    try:
        from timm.models import register_model
    except ImportError:
        return
    for timm_name in NAMES:

        def entry(pretrained: bool = False, _name: str = timm_name, **kwargs: Any) -> GoogLeNet:
            return create(_name, pretrained, **kwargs)

        entry.__name__ = entry.__qualname__ = timm_name
        entry.__module__ = __name__
        register_model(entry)


register()
