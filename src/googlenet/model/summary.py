"""Table 1 of the paper, computed from a built model by walking its modules.

Only the paper's *printed* params/ops are typed in here, as a reference column; every figure of ours
(output sizes, depth, filter counts, weights, multiply-adds) is read off the modules and a forward pass.
"""

from __future__ import annotations

import json
from typing import Any, cast

import torch
from torch import nn

from googlenet.model.googlenet import GoogLeNet
from googlenet.model.layers import Inception, NaiveInception, ParallelBranches

# Table 1 as printed: params in K (units of 1024 weights), ops in M (10^6 multiply-adds) at 224x224.
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "conv1": (2.7, 34),
    "conv2": (112, 360),
    "inception_3a": (159, 128),
    "inception_3b": (380, 304),
    "inception_4a": (364, 73),
    "inception_4b": (437, 88),
    "inception_4c": (463, 100),
    "inception_4d": (580, 119),
    "inception_4e": (840, 170),
    "inception_5a": (1072, 54),
    "inception_5b": (1388, 71),
    "linear": (1000, 1),
}
# A row is marked when our count and the printed one differ by more than 1% and by more than the
# printed figure's rounding (half its last digit: "1M" for the linear layer's 1.024M is no slip).
TOLERANCE = 0.01
FILTER_COLUMNS = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")


def _weighted(module: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _out_channels(block: nn.Module) -> int:
    """The output channels of a convolution block (its last weighted layer is a Conv2d)."""
    return cast(nn.Conv2d, _weighted(block)[-1]).out_channels


def _filters(module: nn.Module) -> dict[str, int]:
    """The Table 1 filter columns, read from the convolutions themselves."""
    # The blocks inside nn.Sequential are modules, which its attributes do not show (Tensor | Module).
    if isinstance(module, Inception):
        b3x3, b5x5, pool = module.branch3x3, module.branch5x5, module.branch_pool
        counts = (
            _out_channels(module.branch1x1),
            _out_channels(cast(nn.Module, b3x3.reduce)),
            _out_channels(cast(nn.Module, b3x3.conv)),
            _out_channels(cast(nn.Module, b5x5.reduce)),
            _out_channels(cast(nn.Module, b5x5.conv)),
            _out_channels(cast(nn.Module, pool.proj)),
        )
        return dict(zip(FILTER_COLUMNS, counts, strict=True))
    if isinstance(module, nn.Sequential) and hasattr(module, "reduce"):  # conv2: reduce, then 3x3
        reduce, conv = cast(nn.Module, module.reduce), cast(nn.Module, module.conv)
        return {"3x3_reduce": _out_channels(reduce), "3x3": _out_channels(conv)}
    return {}


def _depth(module: nn.Module) -> int:
    """Layers with parameters along the longest path, as Table 1's depth column counts them."""
    if isinstance(module, ParallelBranches):
        return max(_depth(branch) for branch in module.branches())
    return len(_weighted(module))


def _describe(module: nn.Module, in_shape: torch.Size) -> tuple[str, str]:
    """Table 1's type and patch size/stride columns."""
    if isinstance(module, Inception):
        return "inception", ""
    if isinstance(module, nn.MaxPool2d):
        return "max pool", f"{module.kernel_size}x{module.kernel_size}/{module.stride}"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "avg pool", f"{in_shape[-2]}x{in_shape[-1]}/1"
    if isinstance(module, nn.Dropout):
        return f"dropout ({module.p:.0%})", ""
    if isinstance(module, nn.Linear):
        return "linear", ""
    conv = [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1]
    return "convolution", f"{conv.kernel_size[0]}x{conv.kernel_size[1]}/{conv.stride[0]}"


class _Counter:
    """Forward hooks that record each conv/linear layer's multiply-adds and each watched module's shapes."""

    def __init__(self) -> None:
        self.macs: dict[nn.Module, int] = {}
        self.shapes: dict[nn.Module, tuple[torch.Size, torch.Size]] = {}
        self._handles: list[Any] = []

    def watch_macs(self, model: nn.Module) -> None:
        for layer in _weighted(model):
            self._handles.append(layer.register_forward_hook(self._count))

    def watch_shapes(self, module: nn.Module) -> None:
        self._handles.append(module.register_forward_hook(self._shape))

    def _count(self, layer: nn.Conv2d | nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        per_output = layer.weight[0].numel()  # in_channels/groups * kh * kw, or in_features
        positions = output.shape[-2] * output.shape[-1] if isinstance(layer, nn.Conv2d) else 1
        self.macs[layer] = self.macs.get(layer, 0) + per_output * layer.weight.shape[0] * positions

    def _shape(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.shapes[module] = (inputs[0].shape, output.shape)

    def cost(self, module: nn.Module) -> tuple[int, int]:
        """(weights, multiply-adds) of the conv/linear layers inside `module` (biases and BN not counted)."""
        layers = _weighted(module)
        return sum(m.weight.numel() for m in layers), sum(self.macs.get(m, 0) for m in layers)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _differs(ours: int, printed: float | None, unit: float) -> bool:
    """Whether our count is off the printed figure (in K or M) beyond 1% and beyond its rounding."""
    if printed is None:
        return False
    half_digit = 0.5 if float(printed).is_integer() else 0.05
    gap = abs(ours / unit - printed)
    return gap > TOLERANCE * printed and gap > half_digit


def _naive_cost(module: Inception, in_shape: torch.Size) -> tuple[int, int]:
    """Weights and multiply-adds of the Figure 2a module with the same #1x1, #3x3, #5x5 on the same input."""
    filters = _filters(module)
    naive = NaiveInception(in_shape[1], filters["1x1"], filters["3x3"], filters["5x5"])
    counter = _Counter()
    counter.watch_macs(naive)
    with torch.no_grad():
        naive(torch.zeros(1, *in_shape[1:]))
    counter.close()
    return counter.cost(naive)


def table1(model: GoogLeNet, input_size: int = 224, naive: bool = False) -> dict[str, Any]:
    """Table 1 for `model` at `input_size`, as a JSON-ready dict (see docs/model.md for the fields)."""
    rows_modules = [
        (name, module)
        for name, module in model.named_children()
        if not name.startswith("aux") and not isinstance(module, (nn.LocalResponseNorm, nn.Identity))
    ]
    aux_modules = [(name, m) for name, m in model.named_children() if name.startswith("aux") and m is not None]
    counter = _Counter()
    counter.watch_macs(model)
    for _, module in rows_modules:
        counter.watch_shapes(module)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, input_size, input_size), return_aux=bool(aux_modules))
    model.train(was_training)
    counter.close()

    rows = []
    for name, module in rows_modules:
        in_shape, out_shape = counter.shapes[module]
        params, macs = counter.cost(module)
        kind, patch = _describe(module, in_shape)
        paper_k, paper_m = PAPER_TABLE1.get(name, (None, None))
        row = {
            "name": name,
            "type": kind,
            "patch": patch,
            "output": [out_shape[-2], out_shape[-1], out_shape[1]] if len(out_shape) == 4 else [1, 1, out_shape[1]],
            "depth": _depth(module),
            "filters": _filters(module),
            "params": params,
            "macs": macs,
            "paper_params": round(paper_k * 1024) if paper_k is not None else None,
            "paper_macs": round(paper_m * 1e6) if paper_m is not None and input_size == 224 else None,
        }
        row["differs_from_paper"] = _differs(params, paper_k, 1024) or (
            row["paper_macs"] is not None and _differs(macs, paper_m, 1e6)
        )
        if naive and isinstance(module, Inception):
            row["naive_params"], row["naive_macs"] = _naive_cost(module, in_shape)
        rows.append(row)
    aux = [dict(zip(("name", "params", "macs"), (name, *counter.cost(m)), strict=True)) for name, m in aux_modules]
    return {
        "model": model.meta.variant if hasattr(model, "meta") else type(model).__name__,
        "input_size": input_size,
        "rows": rows,
        "total_params": sum(r["params"] for r in rows),
        "total_macs": sum(r["macs"] for r in rows),
        "paper_total_params": sum(round(k * 1024) for k, _ in PAPER_TABLE1.values()),
        "paper_total_macs": round(sum(m for _, m in PAPER_TABLE1.values()) * 1e6) if input_size == 224 else None,
        "all_parameters": sum(p.numel() for name, p in model.named_parameters() if not name.startswith("aux")),
        "aux": aux,
    }


def _k(n: int | None) -> str:
    return "" if n is None else f"{n / 1024:,.1f}K"


def _m(n: int | None) -> str:
    return "" if n is None else f"{n / 1e6:,.1f}M"


def _diff(ours: int, paper: int | None) -> str:
    return "" if not paper else f"{(ours - paper) / paper:+.0%}"


HEADER = [
    "name",
    "type",
    "patch/stride",
    "output",
    "depth",
    "#1x1",
    "#3x3 red",
    "#3x3",
    "#5x5 red",
    "#5x5",
    "pool proj",
    "params",
    "paper",
    "diff",
    "ops",
    "paper",
    "diff",
]


def _rows(summary: dict[str, Any], fmt: str, naive: bool) -> list[list[str]]:
    """One list of cells per Table 1 row, then the total."""
    lines = []
    for r in summary["rows"]:
        mark = ("\\*" if fmt == "markdown" else "*") if r["differs_from_paper"] else ""
        cells = [r["name"] + mark, r["type"], r["patch"], "x".join(map(str, r["output"])), str(r["depth"])]
        cells += [str(r["filters"].get(col, "")) for col in FILTER_COLUMNS]
        cells += [_k(r["params"] or None), _k(r["paper_params"]), _diff(r["params"], r["paper_params"])]
        cells += [_m(r["macs"] or None), _m(r["paper_macs"]), _diff(r["macs"], r["paper_macs"])]
        if naive:
            cells += [_k(r.get("naive_params")), _m(r.get("naive_macs"))]
        lines.append(cells)
    total = ["total", "", "", "", "", "", "", "", "", "", ""]
    total += [
        _k(summary["total_params"]),
        _k(summary["paper_total_params"]),
        _diff(summary["total_params"], summary["paper_total_params"]),
        _m(summary["total_macs"]),
        _m(summary["paper_total_macs"]),
        _diff(summary["total_macs"], summary["paper_total_macs"]),
    ]
    total += ["", ""] if naive else []
    return [*lines, total]


def _notes(summary: dict[str, Any]) -> list[str]:
    """What the columns count, what the marks mean, and the parameters the table leaves out."""
    return [
        "params: conv/linear weights (K = 1024; biases and BatchNorm not counted, as in the paper); "
        "ops: multiply-adds (M = 10^6).",
        f"* differs from the printed Table 1 by more than {TOLERANCE:.0%}: for `googlenet` at 224 these "
        "are the table's own arithmetic slips (docs/model.md).",
        f"All parameters (biases included, aux heads excluded): {summary['all_parameters']:,}. "
        + "; ".join(f"{a['name']} (training only): {_k(a['params'])}, {_m(a['macs'])}" for a in summary["aux"]),
    ]


def render(summary: dict[str, Any], fmt: str = "table") -> str:
    """The summary as an aligned text table, a Markdown table or JSON."""
    if fmt == "json":
        return json.dumps(summary, indent=2)
    naive = any("naive_params" in r for r in summary["rows"])
    header = HEADER + (["naive params", "naive ops"] if naive else [])
    lines, notes = _rows(summary, fmt, naive), _notes(summary)
    title = f"Table 1 of {summary['model']} at {summary['input_size']}x{summary['input_size']}"
    if fmt == "markdown":
        out = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join([*out, "", *notes])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def fmt_row(cells: list[str]) -> str:  # names and types left-aligned, figures right-aligned
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([title, fmt_row(header), *map(fmt_row, lines), *notes])


def table1_for(
    name: str = "googlenet", input_size: int = 224, naive: bool = False, width: float = 1.0
) -> dict[str, Any]:
    """`googlenet summary`: `table1` of the variant `name` built at `width` (with its auxiliary heads)."""
    from googlenet.model.variants import build_model

    if input_size < 32:
        raise ValueError(f"--input-size must be at least 32, not {input_size}")
    return table1(build_model(name, width=width, aux=True), input_size, naive=naive)
