"""Looking inside the network: activations by our, BVLC's and Lucid's layer names (`names`, `activations`), class
activation maps and Grad-CAM (`cam`)."""

from googlenet.inside.activations import activations
from googlenet.inside.cam import Maps, class_activation_maps, grad_cam, peak_box, upsampled
from googlenet.inside.names import layer_names, resolve_layer

__all__ = [
    "Maps",
    "activations",
    "class_activation_maps",
    "grad_cam",
    "layer_names",
    "peak_box",
    "resolve_layer",
    "upsampled",
]
