"""Images/s of the training step (the paper's GoogLeNet with its auxiliary heads, SGD, Polyak averaging; bf16
autocast and channels_last on CUDA), eager and under torch.compile, on synthetic batches; and of the loader and
the step together on generated ImageNet-like JPEGs. One JSON line per setting.

    python benchmarks/train_step.py --device cuda            # batch 256 at 224: a few minutes on one GPU
    python benchmarks/train_step.py --device cpu --quick --json   # width 0.5 at 112, batch 8: about 2 minutes
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from loader import imagenet_like

from googlenet.train import config as train_config
from googlenet.train.loop import setup, train_step


def config(args: argparse.Namespace, root: str, compiled: bool, workers: int) -> train_config.TrainConfig:
    """The ImageNet config at the benchmark's size, on `root`'s JPEGs."""
    overrides = {
        "data.dataset": "imagefolder",
        "data.root": root,
        "data.val_split": "train",
        "data.batch_size": str(args.batch),
        "data.workers": str(workers),
        "model.width": str(args.width),
        "model.input_size": str(args.size),
        "run.device": args.device,
        "run.compile": str(compiled).lower(),
        "run.out": str(Path(root) / "run"),
        "run.log_every": str(args.steps),
    }
    return train_config.load("imagenet", overrides)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_rate(run, args: argparse.Namespace) -> float:
    """Images/s of train_step on one synthetic uint8 batch (with its colour draws), after `args.warmup` steps."""
    batch, size = args.batch, args.size
    pixels = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    colour = torch.tensor([[0, 1, 2, 1.1, 0.9, 1.2, 0.01, 0.0, -0.01]]).repeat(batch, 1)
    targets = torch.randint(0, len(run.classes), (batch,))
    if args.device == "cuda":
        pixels, colour = pixels.pin_memory(), colour.pin_memory()
    run.net.train()
    for _ in range(args.warmup):
        train_step(run, [pixels, colour], targets, 0.01)
    synchronize(args.device)
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(run, [pixels, colour], targets, 0.01)
    synchronize(args.device)
    seconds = time.perf_counter() - start
    run.record.read()
    return args.steps * batch / seconds


def end_to_end_rate(run, args: argparse.Namespace) -> float:
    """Images/s of the DataLoader and train_step together, over `args.steps` batches after the first."""
    from googlenet.train.loop import _epoch_loader

    loader = iter(_epoch_loader(run, 0))
    images, targets = next(loader)
    train_step(run, images, targets, 0.01)
    synchronize(args.device)
    start = time.perf_counter()
    for _ in range(args.steps):
        images, targets = next(loader)
        train_step(run, images, targets, 0.01)
    synchronize(args.device)
    return args.steps * args.batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the end-to-end setting")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile setting")
    parser.add_argument("--quick", action="store_true", help="width 0.5 at 112, batch 8, 4 steps: for CPUs")
    parser.add_argument("--json", action="store_true", help="JSON lines only")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.width, args.steps, args.warmup, args.workers = 8, 112, 0.5, 4, 2, 1
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        imagenet_like(Path(tmp) / "train", max(args.batch * (args.steps + 2), 100))
        settings = [("step eager", False), ("step compiled", True)][: 1 if args.no_compile else 2]
        for setting, compiled in [*settings, ("loader + step", False)]:
            workers = args.workers if setting == "loader + step" else 0
            run = setup(config(args, tmp, compiled, workers))
            start = time.perf_counter()
            rate = end_to_end_rate(run, args) if setting == "loader + step" else step_rate(run, args)
            record = {
                "setting": setting,
                "batch": args.batch,
                "size": args.size,
                "width": args.width,
                "images_per_s": round(rate, 1),
                "device": name,
                "bf16": args.device == "cuda" and run.cfg.run.amp,
                "workers": workers,
                "seconds": round(time.perf_counter() - start, 1),
            }
            if not args.json:
                print(f"{setting}: {rate:,.1f} images/s (batch {args.batch} at {args.size}, {name})", file=sys.stderr)
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
