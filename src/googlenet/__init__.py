"""googlenet: a faithful, fast and practical implementation of "Going deeper with convolutions"."""

from googlenet.model import (
    GoogLeNet,
    GoogLeNetOutputs,
    Inception,
    ModelMeta,
    NaiveInception,
    build_model,
    list_models,
    load_model,
    read_weights,
    save_weights,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`googlenet.classify` and `googlenet.transforms_for`, imported when first used (they pull in the data
    and evaluation code, which `import googlenet` alone does not need)."""
    if name == "classify":
        from googlenet.evaluate.multicrop import classify

        return classify
    if name == "transforms_for":
        from googlenet.data.transforms import transforms_for

        return transforms_for
    raise AttributeError(f"module 'googlenet' has no attribute {name!r}")


__all__ = [
    "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception",
    "ModelMeta",
    "NaiveInception",
    "__version__",
    "build_model",
    "classify",
    "list_models",
    "load_model",
    "read_weights",
    "save_weights",
    "transforms_for",
]
