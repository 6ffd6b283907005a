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

__all__ = [
    "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception",
    "ModelMeta",
    "NaiveInception",
    "__version__",
    "build_model",
    "list_models",
    "load_model",
    "read_weights",
    "save_weights",
]
