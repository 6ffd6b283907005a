#!/usr/bin/env bash
# Paper section 7 on Fashion-MNIST: train N models that differ only in sampling and data order (the paper's
# ensemble: same initial weights, run.init_seed 0; data order, augmentation and dropout from run.seed), then
# the paper's Table 3 (best single model and the ensemble of all, each with 1, 10 and 144 crops).
#
#   benchmarks/fashion_mnist_table3.sh [N] [LIMIT]
#
# N models (default 3) of configs/fashion_mnist.yaml, about 21 minutes each on a 2-core CPU; model 0 is the
# README's main job (seed 0). LIMIT: evaluate the first LIMIT test images only (default 0 = all 10,000; the
# 144 crops cost 48 forward passes per image and model, as Fashion-MNIST's square images have 48 distinct
# crops). Finished models are kept: rerunning skips them. Outputs in runs/ensemble/ (OUT to change).
set -euo pipefail
N=${1:-3}
LIMIT=${2:-0}
OUT=${OUT:-runs/ensemble}
GOOGLENET=${GOOGLENET:-googlenet}
members=()
for i in $(seq 0 $((N - 1))); do
  if [ ! -f "$OUT/m$i/model.safetensors" ]; then
    $GOOGLENET train --config configs/fashion_mnist.yaml --out "$OUT/m$i" --run.seed "$i" --run.init_seed 0
  fi
  members+=("$OUT/m$i")
done
$GOOGLENET evaluate --table3 --checkpoint "${members[@]}" --limit "$LIMIT" --out "$OUT/table3"
