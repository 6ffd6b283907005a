"""The loss and accuracy curves of a run, from its metrics.jsonl, as a PNG."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl, less a last line that a kill cut short."""
    records = []
    for line in Path(path).read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def plot_curves(metrics_path: str | Path, out_path: str | Path, title: str = "") -> Path:
    """Training loss against step (left) and evaluation top-1/top-5 (or recall) against epoch (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = read_metrics(metrics_path)
    steps = [r for r in records if r["kind"] == "step"]
    evals = [r for r in records if r["kind"] == "eval"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="total (main + 0.3 aux)", lw=1)
    left.plot([r["step"] for r in steps], [r["loss_main"] for r in steps], label="main classifier", lw=1)
    left.set(xlabel="step", ylabel="training loss", yscale="log", title="training loss")
    left.legend()
    curves = (("top1", "top-1 accuracy"), ("top5", "top-5 accuracy"), ("recall", "recall at IoU 0.5 (MultiBox)"))
    for key, label in curves:
        points = [(r["epoch"], 100 * r[key]) for r in evals if key in r]  # fractions in the log, % for people
        if points:
            right.plot(*zip(*points, strict=True), marker="o", label=label)
    right.set(xlabel="epoch", ylabel="%", title="evaluation (Polyak-averaged weights)")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    if right.lines:  # no evaluation yet when max_steps stops a run within its first epoch
        right.legend()
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
