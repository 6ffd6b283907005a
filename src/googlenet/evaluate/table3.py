"""The paper's Table 3 for our own models: 1 and N models x 1, 10 and 144 crops, error against cost."""

from __future__ import annotations

import json
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any

import torch

from googlenet.data.multicrop import CropSpec
from googlenet.evaluate.multicrop import CropEnsemble, run, scores
from googlenet.model import Classifier

# Table 3 as printed (ILSVRC 2014 validation, 7 models): (models, crops, cost, top-5 error %).
PAPER_TABLE3 = [
    (1, 1, 1, 10.07),
    (1, 10, 10, 9.15),
    (1, 144, 144, 7.89),
    (7, 1, 7, 8.09),
    (7, 10, 70, 7.62),
    (7, 144, 1008, 6.67),
]


def table3(
    models: Sequence[Classifier],
    names: list[str],
    dataset: Sized,
    crops: tuple[int, ...] = (1, 10, 144),  # Table 3's crop counts
    device: str = "cpu",
    **run_options: Any,
) -> dict[str, Any]:
    """Evaluate every model once per crop count, then score the best single model (highest 1-crop top-1,
    as the paper picks it) and the ensemble of all models at each crop count. Errors are fractions; each row's
    change is against the first row (1 model, 1 crop); cost = models x crops."""
    ensemble = CropEnsemble(models, "mean", device)
    probs, seconds = {}, {}
    for n in crops:
        collected, seconds[n] = run(ensemble, dataset, CropSpec.of(models, n), **run_options)
        probs[n] = collected.model_probs()
    targets = torch.cat(collected.targets)
    singles = [scores(p, targets) for p in probs[crops[0]]]
    best = max(range(len(models)), key=lambda i: singles[i]["top1"])
    groups = [[best]] + ([list(range(len(models)))] if len(models) > 1 else [])
    rows = []
    for members in groups:
        for n in crops:
            row = {"models": len(members), "crops": n, "cost": len(members) * n}
            row.update(scores(probs[n][members].mean(dim=0), targets))
            rows.append(row)
    for row in rows:
        row["top1_error_change"] = row["top1_error"] - rows[0]["top1_error"]
        row["top5_error_change"] = row["top5_error"] - rows[0]["top5_error"]
    return {
        "rows": rows,
        "images": len(targets),
        "best_model": names[best],
        "models": [{"checkpoint": name, **s} for name, s in zip(names, singles, strict=True)],
        "seconds": {str(n): round(s, 1) for n, s in seconds.items()},
        "paper_table3": [
            dict(zip(("models", "crops", "cost", "top5_error_pct"), r, strict=True)) for r in PAPER_TABLE3
        ],
    }


def _pct(x: float, signed: bool = False) -> str:
    return f"{100 * x:+.2f}%" if signed else f"{100 * x:.2f}%"


def render(result: dict[str, Any], markdown: bool = False) -> str:
    """Table 3's columns (models, crops, cost, top-5 error, compared to base) plus top-1 error."""
    head = ["Models", "Crops", "Cost", "Top-5 error", "Compared to base", "Top-1 error", "Compared to base"]
    body = []
    for i, r in enumerate(result["rows"]):
        changes = (
            ("base", "base") if i == 0 else (_pct(r["top5_error_change"], True), _pct(r["top1_error_change"], True))
        )
        body.append(
            [
                str(r["models"]),
                str(r["crops"]),
                str(r["cost"]),
                _pct(r["top5_error"]),
                changes[0],
                _pct(r["top1_error"]),
                changes[1],
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body]) + "\n"
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *body]) + "\n"


def plot(result: dict[str, Any], path: str | Path) -> None:
    """Error against cost (log scale), one line per number of models, for top-1 and top-5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("top1_error", "top5_error"), strict=True):
        for models in sorted({r["models"] for r in result["rows"]}):
            rows = [r for r in result["rows"] if r["models"] == models]
            ax.plot([r["cost"] for r in rows], [100 * r[key] for r in rows], "o-", label=f"{models} model(s)")
            for r in rows:
                ax.annotate(
                    f"{r['crops']} crop(s)", (r["cost"], 100 * r[key]), textcoords="offset points", xytext=(4, 4)
                )
        ax.set_xscale("log")
        ax.set_xlabel("cost (models x crops)")
        ax.set_ylabel(f"{key.replace('_', ' ')} (%)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"Table 3 on {result['images']} images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: dict[str, Any], out: str | Path) -> list[Path]:
    """table3.md, table3.json and table3.png in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table3.md", out / "table3.json", out / "table3.png"]
    paths[0].write_text(render(result, markdown=True))
    paths[1].write_text(json.dumps(result, indent=2) + "\n")
    plot(result, paths[2])
    return paths
