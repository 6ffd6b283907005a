"""Is the data loader a bottleneck? Images/s of the training DataLoader (decoding + the paper's augmentation).

Compare with the training throughput that `googlenet train` logs (images_per_s in metrics.jsonl).

    python benchmarks/loader.py --config configs/fashion_mnist.yaml --images 6000 --workers 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time

from googlenet.data import Augmented, build_dataset, train_loader
from googlenet.model import VARIANTS
from googlenet.train import config as train_config
from googlenet.train.classification import training_transforms
from googlenet.train.task import input_scaling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/fashion_mnist.yaml")
    parser.add_argument("--images", type=int, default=6000, help="images to load per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    cfg = train_config.load(args.config)
    transform = training_transforms(cfg, *input_scaling(cfg, VARIANTS[cfg.model.name]))[0]
    dataset = Augmented(
        build_dataset(cfg.data.dataset, cfg.data.root, cfg.data.train_split, args.images), transform, cfg.run.seed
    )
    results = []
    for workers in args.workers:
        loader, sampler = train_loader(dataset, cfg.data.batch_size, 0, 1, workers, cfg.run.seed)
        sampler.set_epoch(0)
        start = time.perf_counter()
        count = sum(len(images) for images, _ in loader)
        seconds = time.perf_counter() - start
        results.append({"workers": workers, "images": count, "images_per_s": round(count / seconds, 1)})
        print(f"workers={workers}: {count / seconds:,.0f} images/s ({count} images, {seconds:.1f} s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
