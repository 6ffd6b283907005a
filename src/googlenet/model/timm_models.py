"""Our variants in timm's registry: `timm.create_model("googlenet_paper")` (the paper's network, LRN),
"googlenet_bn" and "googlenet_tv", with timm's model interface, pretrained tags for the published weights
(`timm.create_model("googlenet_paper.bvlc_in1k", pretrained=True)`, loaded through googlenet.model.hub) and
`features_only=True`. Importing this module registers them; `import googlenet` imports it once timm is imported,
before or after googlenet (googlenet/__init__.py)."""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, register_notrace_module
from timm.models._builder import resolve_pretrained_cfg

from googlenet.model.googlenet import GoogLeNet
from googlenet.model.hub import PUBLISHED
from googlenet.model.layers import AuxHead, LocalResponseNorm
from googlenet.model.variants import VARIANTS, build_model

# timm's name -> ours ("googlenet" alone would read as torchvision's port, which ours calls googlenet_tv).
NAMES = {"googlenet_paper": "googlenet", "googlenet_bn": "googlenet_bn", "googlenet_tv": "googlenet_tv"}
# timm's pretrained tags -> the published weights they load (googlenet.model.hub.PUBLISHED); the first is the default.
TAGS: dict[str, dict[str, str]] = {
    "googlenet_paper": {"bvlc_in1k": "bvlc", "places365": "places365"},
    "googlenet_bn": {},
    "googlenet_tv": {"tv_in1k": "torchvision"},
}
_CLASSES = {"bvlc": 1000, "torchvision": 1000, "places365": 365}


def _cfg(name: str, weights: str | None = None) -> dict[str, Any]:
    """timm's pretrained cfg of `name` with `weights` (None: untrained): what timm.data and timm's tests read."""
    variant = VARIANTS[NAMES[name]]
    return {
        "url": PUBLISHED[weights].url if weights else "",  # where it comes from; loaded by googlenet.model.hub
        "num_classes": _CLASSES[weights] if weights else 1000,
        "input_size": (3, 224, 224),
        "min_input_size": (3, 32, 32),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": variant.mean,
        "std": variant.std,
        "first_conv": "conv1.conv",
        "classifier": "linear",
        "license": "bsd-2-clause" if weights in ("bvlc", "torchvision") else "",
    }


default_cfgs = generate_default_cfgs(
    {
        **{f"{name}.{tag}": _cfg(name, weights) for name, tags in TAGS.items() for tag, weights in tags.items()},
        **{name: _cfg(name) for name, tags in TAGS.items() if not tags},
    }
)


def create(name: str, pretrained: bool = False, **kwargs: Any) -> GoogLeNet:
    """`build_model(NAMES[name], ...)` from timm's create_model arguments, through timm's own builder (its
    pretrained cfg, `features_only`): auxiliary heads only with `aux=True` (as timm builds Inception v3), the
    published weights of the tag with `pretrained=True` (a new classifier where `num_classes` differs)."""
    cfg = resolve_pretrained_cfg(
        name,
        pretrained_cfg=kwargs.pop("pretrained_cfg", None),
        pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None),
    )
    kwargs.pop("cache_dir", None)
    weights = TAGS[name].get(cfg.tag or "") if pretrained else None
    if pretrained and weights is None:
        published = ", ".join(f"{name}.{tag}" for tag in TAGS[name]) or "none"
        raise ValueError(f"no published weights for {name}.{cfg.tag or ''} (published: {published})")
    if "drop_rate" in kwargs:
        kwargs["dropout"] = kwargs.pop("drop_rate")
    kwargs.setdefault("aux", False)
    if kwargs.get("features_only"):
        kwargs.setdefault("feature_cls", "getter")  # the stages through forward_intermediates

    def build(in_chans: int = 3, num_classes: int | None = None, **options: Any) -> GoogLeNet:
        if in_chans != 3:
            raise ValueError("GoogLeNet takes 3-channel (RGB) images: in_chans must be 3")
        model = build_model(NAMES[name], num_classes=None if weights else num_classes, weights=weights, **options)
        if num_classes is not None and num_classes != model.num_classes:
            model.reset_classifier(num_classes)
        return model

    model = build_model_with_cfg(build, name, pretrained=False, pretrained_cfg=cfg.to_dict(), **kwargs)
    meta = getattr(model, "meta", None)
    if meta is not None:  # the cfg says what these weights expect (their record), as timm.data reads it
        model.pretrained_cfg = model.default_cfg = {
            **model.pretrained_cfg,
            "input_size": (3, meta.input_size, meta.input_size),
            "pool_size": (-(-meta.input_size // 32),) * 2,
            "mean": tuple(meta.mean),
            "std": tuple(meta.std),
            "crop_pct": meta.crop_pct,
            "num_classes": model.num_classes,
        }
    return model


def _entry(timm_name: str) -> Any:
    def entry(pretrained: bool = False, **kwargs: Any) -> GoogLeNet:
        return create(timm_name, pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = timm_name
    entry.__module__ = __name__  # timm finds default_cfgs in the entry's module
    entry.__doc__ = VARIANTS[NAMES[timm_name]].description
    return entry


for _name in NAMES:
    register_model(_entry(_name))
# Modules whose forward branches on a tensor's shape or autograd state: leaves for torch.fx (timm's FX helpers).
register_notrace_module(LocalResponseNorm)
register_notrace_module(AuxHead)
