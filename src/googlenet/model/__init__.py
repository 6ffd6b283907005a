"""The Inception architecture and its GoogLeNet incarnation (paper sections 4-5)."""

from googlenet.model.googlenet import GoogLeNet, GoogLeNetOutputs
from googlenet.model.hub import read_weights
from googlenet.model.layers import AuxHead, ConvBlock, Inception, NaiveInception
from googlenet.model.loading import Classifier, load_for_inference
from googlenet.model.meta import ModelMeta, MultiBoxHead, RegionHead
from googlenet.model.variants import VARIANTS, build_model, list_models, load_model
from googlenet.model.weights import save_weights

__all__ = [
    "VARIANTS",
    "AuxHead",
    "Classifier",
    "ConvBlock",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "Inception",
    "ModelMeta",
    "MultiBoxHead",
    "NaiveInception",
    "RegionHead",
    "build_model",
    "list_models",
    "load_for_inference",
    "load_model",
    "read_weights",
    "save_weights",
]
