import pytest
import torch

from googlenet import build_model

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


def write_idx(path, array):
    """An unsigned-byte IDX file (gzipped when the name ends in .gz)."""
    import gzip
    import struct

    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


def make_fashion_mnist(folder, n_train=96, n_test=48, gz=True, seed=0):
    """A tiny learnable Fashion-MNIST stand-in: class c is a bright band at row 2c on noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 8, 4:24] = 250
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.fixture
def fmnist(tmp_path):
    return make_fashion_mnist(tmp_path / "fmnist")


def trained_like(name, **options):
    """A tiny model whose BatchNorm statistics and affine parameters are far from their initial values (Caffe's
    init for every variant: torchvision's std 0.01 gives logits too small to compare)."""
    model = build_model(name, num_classes=10, width=0.25, **{"init": "xavier", **options})
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = 0.5
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64) * 2 + 0.5)
    return model.eval()


# How many times the eager float32 model's own rounding error another float32 computation of the same function
# may be off by. Two float32 computations that add the same terms in other orders (oneDNN's kernels on another
# CPU, onnxruntime's, a BatchNorm folded into the weights, another batch size) have rounding errors of one kind
# and size, a few times apart (measured: ONNX, TorchScript, the oneDNN fuser and the fused inference model at
# 0.5-1.5 times the eager model's, on AVX-512). A wrong computation (other weights, a missing layer, a wrong
# average) is off by about the outputs themselves: 10^4-10^6 times the eager rounding.
ROUNDING_FACTOR = 16
UNIT_ROUNDOFF = torch.finfo(torch.float32).eps / 2  # 2**-24: the relative error of one float32 operation


def float32_rounding(compute, module, *inputs):
    """(exact result, float32 rounding error) of compute(module, *inputs): the result in float64 (on a float64
    copy of the module; its own rounding is 2**29 times smaller, so it stands in for the exact one) and the
    largest distance of the float32 result from it."""
    import copy

    with torch.no_grad():
        ours = compute(module, *inputs).double()
        exact = compute(copy.deepcopy(module).double(), *(x.double() for x in inputs))
    return exact, float((ours - exact).abs().max())


def assert_float32_close(got, compute, module, *inputs, terms=1):
    """`got`, another float32 computation of compute(module, *inputs) (an exported file, the fused inference
    model, other batches), is as close to the exact result as float32 rounding allows: ROUNDING_FACTOR times the
    eager computation's own rounding error, measured on this CPU (not a figure tuned on one), plus `terms` unit
    roundoffs of the largest output. That last part is the worst case of a final sum of `terms` like-signed
    values added in another order (Higham's gamma_n: n unit roundoffs of the sum), such as a mean over crops."""
    exact, rounding = float32_rounding(compute, module, *inputs)
    allowed = ROUNDING_FACTOR * rounding + terms * UNIT_ROUNDOFF * float(exact.abs().max())
    off = float((got.double() - exact).abs().max())
    assert off <= allowed, f"off by {off:.3g} from float64: the float32 rounding error is {rounding:.3g}"


def forward(module, *inputs):
    """compute() for assert_float32_close: the module's forward."""
    return module(*inputs)
