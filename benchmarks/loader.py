"""Does the input pipeline keep up? Images/s per DataLoader worker core of our training pipeline (the paper's full
augmentation: JPEG decoded at the scale its random-sized crop needs, one of four interpolations, flip, uint8; the
photometric distortions, lighting and normalisation per batch on the device) against torchvision's reference
classification recipe (ImageFolder, RandomResizedCrop(224), RandomHorizontalFlip, PILToTensor, ConvertImageDtype,
Normalize), on the same ImageNet-like JPEGs in the same run; and the per-batch part's cost on the device.

    python benchmarks/loader.py --quick --json      # about 2 minutes on 2 cores
    python benchmarks/loader.py --images 2000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from googlenet.data import Augmented, build_dataset, images, train_loader, train_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def imagenet_like(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` JPEGs (quality 90) in 10 class folders, sized as ILSVRC-2012's train images mostly are: 70% 500 px on
    the long side at 4:3 or 3:2 (either way up), 20% smaller (250-500 px), 10% large (800-2500 px); smooth
    structure with fine grain, about 100 KB at 500x375 as ImageNet's are."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        kind = rng.random()
        long = 500 if kind < 0.7 else int(rng.integers(250, 500)) if kind < 0.9 else int(rng.integers(800, 2500))
        short = int(long * rng.choice([3 / 4, 2 / 3]))
        width, height = (long, short) if rng.random() < 0.75 else (short, long)
        base = rng.integers(0, 255, (height // 12 + 2, width // 12 + 2, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-10, 11, (height, width, 1), dtype=np.int16)
        where = folder / f"n{k % 10:08d}"
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(where / f"{k}.JPEG", quality=90)
    return folder


def rate(loader: DataLoader, images: int) -> float:
    """Images/s over `images` images, after the first batch (worker start-up) is out."""
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for batch in it:
        count += len(batch[1])
        if count >= images:
            break
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200, help="JPEGs to generate (each pass reads most of them)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (per core = images/s / workers)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements of each; the median counts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="400 images, 3 rounds: about 2 minutes on 2 cores")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    if args.quick:
        args.images = 400
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = imagenet_like(Path(tmp) / "train", args.images)
        per_pass = args.images - 2 * args.batch
        ours_aug = train_transform(224, MEAN, STD)  # the paper's full augmentation, configs/imagenet.yaml's
        ours = Augmented(build_dataset("imagefolder", tmp, "train", decode=False), ours_aug, seed=0)
        reference = T.Compose(
            [
                T.RandomResizedCrop(224),
                T.RandomHorizontalFlip(),
                T.PILToTensor(),
                T.ConvertImageDtype(torch.float),
                T.Normalize(MEAN, STD),
            ]
        )
        theirs = datasets.ImageFolder(str(root), transform=reference)
        ours_rates, theirs_rates = [], []
        for round_ in range(args.rounds):
            loader, sampler = train_loader(ours, args.batch, 0, 1, args.workers, seed=round_)
            sampler.set_epoch(round_)
            ours_rates.append(rate(loader, per_pass) / args.workers)
            generator = torch.Generator().manual_seed(round_)
            loader = DataLoader(theirs, args.batch, shuffle=True, num_workers=args.workers, generator=generator)
            theirs_rates.append(rate(loader, per_pass) / args.workers)
        pixels = torch.randint(0, 256, (args.batch, 3, 224, 224), dtype=torch.uint8)
        torch.manual_seed(0)
        colour = torch.stack([ours_aug.draw(224, 224).colour() for _ in range(args.batch)])
        device_ms = {}
        for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            p, c = pixels.to(device), colour.to(device)
            times = []
            for _ in range(5):
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                ours_aug.on_device(p, c)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            device_ms[device] = round(statistics.median(times[1:]) / args.batch * 1e3, 3)
    ours_rate, theirs_rate = statistics.median(ours_rates), statistics.median(theirs_rates)
    result = {
        "images": args.images,
        "workers": args.workers,
        "ours_per_core": round(ours_rate, 1),
        "torchvision_per_core": round(theirs_rate, 1),
        "ratio": round(ours_rate / theirs_rate, 2),
        "rounds": {"ours": [round(r, 1) for r in ours_rates], "torchvision": [round(r, 1) for r in theirs_rates]},
        "device_part_ms_per_image": device_ms,
        "region_decode": images._jpeg is not None,  # googlenet.data._jpeg built: crops decoded alone
        "cpu": platform.processor() or platform.machine(),
    }
    if not args.json:
        print(
            f"per worker core: ours {ours_rate:,.0f} images/s, torchvision's recipe {theirs_rate:,.0f} images/s "
            f"({ours_rate / theirs_rate:.2f}x); the per-batch part on the device: "
            + ", ".join(f"{d} {ms:.2f} ms/image" for d, ms in device_ms.items())
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
