import pytest
import torch

# Table 1's output size column as (C, H, W), at 224x224.
TABLE1_224 = {
    "conv1": (64, 112, 112),
    "pool1": (64, 56, 56),
    "norm1": (64, 56, 56),
    "conv2": (192, 56, 56),
    "norm2": (192, 56, 56),
    "pool2": (192, 28, 28),
    "inception_3a": (256, 28, 28),
    "inception_3b": (480, 28, 28),
    "pool3": (480, 14, 14),
    "inception_4a": (512, 14, 14),
    "inception_4b": (512, 14, 14),
    "inception_4c": (512, 14, 14),
    "inception_4d": (528, 14, 14),
    "inception_4e": (832, 14, 14),
    "pool4": (832, 7, 7),
    "inception_5a": (832, 7, 7),
    "inception_5b": (1024, 7, 7),
    "avgpool": (1024, 1, 1),
    "dropout": (1024,),
    "linear": (1000,),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def stage_outputs(model, size):
    """{row name: (C, H, W)} for each top-level module of `model`, from one forward pass."""
    shapes, handles = {}, []
    for name, module in model.named_children():
        if module is not None and not name.startswith("aux"):
            hook = lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))  # noqa: E731
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return shapes
