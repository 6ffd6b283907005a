"""Layer names: ours (module paths: `inception_4c`, `inception_4c.branch5x5`), BVLC's Caffe blob names
(`conv2/norm2`, `inception_4c/output`, `inception_4c/5x5`, `pool5/7x7_s1`, `loss3/classifier`) and the
mixed3a ... mixed5b names Lucid and the circuits papers use, each resolved to one module of the eager model."""

from __future__ import annotations

import difflib

from torch import nn

from googlenet.model.caffe import BRANCHES, INCEPTION

# Each blob of BVLC's deploy.prototxt after its in-place ReLU, as our module whose output it is: a branch layer's
# ConvBlock (the convolution's parent), the branch's pool, and the module's concatenated output.
_BLOB_BRANCHES = {
    **{blob: conv.removesuffix(".conv") for blob, conv in BRANCHES.items()},
    "pool": "branch_pool.pool",
    "output": "",
}
BVLC_BLOBS = {
    "conv1/7x7_s2": "conv1",
    "pool1/3x3_s2": "pool1",
    "pool1/norm1": "norm1",
    "conv2/3x3_reduce": "conv2.reduce",
    "conv2/3x3": "conv2.conv",
    "conv2/norm2": "norm2",
    "pool2/3x3_s2": "pool2",
    **{
        f"inception_{i}/{blob}": f"inception_{i}" + (f".{ours}" if ours else "")
        for i in INCEPTION
        for blob, ours in _BLOB_BRANCHES.items()
    },
    "pool3/3x3_s2": "pool3",
    "pool4/3x3_s2": "pool4",
    "pool5/7x7_s1": "avgpool",
    "pool5/drop_7x7_s1": "dropout",
    "loss3/classifier": "linear",
    "loss1/conv": "aux1.conv",
    "loss1/classifier": "aux1.linear",
    "loss2/conv": "aux2.conv",
    "loss2/classifier": "aux2.linear",
}
# Lucid's InceptionV1 (modelzoo) names of the same layers: the stem's convolutions and the Inception modules.
LUCID = {
    "conv2d0": "conv1",
    "conv2d1": "conv2.reduce",
    "conv2d2": "conv2.conv",
    **{f"mixed{i}": f"inception_{i}" for i in INCEPTION},
}


def layer_names(model: nn.Module) -> list[str]:
    """Every name a layer of `model` answers to: its module paths, then BVLC's and Lucid's names of them."""
    ours = [name for name, _ in model.named_modules() if name]
    present = set(ours)
    aliases = [alias for table in (BVLC_BLOBS, LUCID) for alias, path in table.items() if path in present]
    return ours + aliases


def resolve_layer(model: nn.Module, name: str) -> str:
    """Our module path for `name` (ours, BVLC's or Lucid's); an unknown name is a one-line ValueError naming the
    closest ones."""
    modules = dict(model.named_modules())
    path = BVLC_BLOBS.get(name, LUCID.get(name, name))
    if path and path in modules:
        return path
    close = difflib.get_close_matches(name, layer_names(model), n=4, cutoff=0.6)
    tip = f"; did you mean {', '.join(close)}?" if close else " (names: googlenet.inside.layer_names(model))"
    raise ValueError(f"no layer named {name!r} in this {type(model).__name__}{tip}")
