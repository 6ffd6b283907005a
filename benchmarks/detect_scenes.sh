#!/usr/bin/env bash
# Issue 23's detection figures (docs/results.md, "A fifth cycle" and "A sixth cycle"): the region classifier
# trained on generated scenes of the given styles in six one-epoch cycles, R-CNN's SVMs, scored with --flip on
# the 300 mixed test scenes (data/mix, all three styles: a style left out of STYLES is held out of training
# entirely).
#
#   benchmarks/detect_scenes.sh NAME [STYLE ...]
#   benchmarks/detect_scenes.sh mix                       # the mixture: 71.92% one model, 72.27% the ensemble
#   benchmarks/detect_scenes.sh noph clutter texture      # photographs held out: 62.64% / 63.48% on the photo
#
# Train scenes: 400 per style in data/NAME (seed 0), 400 more in data/NAME1 (seed 1) and in data/NAME2 (seed 2);
# validation windows from test scenes of the same styles (data/mix's 300 when all three). Cycles, each a warm
# restart from the last: NAME0 (lr 0.01, from the main job's runs/fashion_mnist/model.safetensors), NAME0b,
# NAME0c, NAME0d (lr 0.005) on data/NAME; two fifth cycles from NAME0d, NAME0e on data/NAME again and NAME1e on
# data/NAME1, whose ensemble is the five-cycle figure; then a sixth cycle for each on data/NAME2, NAME1f from
# NAME1e (the single-model figure) and NAME0f from NAME0e, whose ensemble is the last figure. About 20 min per
# cycle of 1,200 scenes on a 2-core Zen 4 with CPU_AMP=true (bfloat16; leave it false where the CPU lacks
# AVX512-BF16), 5 min per SVM fit, 5 min per evaluation, 9 min per ensemble's. Finished steps are skipped and an
# interrupted cycle resumes, so rerunning continues. Outputs: runs/det/NAME*, runs/det/eval_*.json, timings in
# runs/det/NAME.times.
set -euo pipefail
NAME=${1:?usage: benchmarks/detect_scenes.sh NAME [STYLE ...]}
shift
STYLES=("$@")
[ ${#STYLES[@]} -gt 0 ] || STYLES=(clutter texture photo)
GOOGLENET=${GOOGLENET:-googlenet}
CPU_AMP=${CPU_AMP:-false}
WORKERS=${WORKERS:-2}
RUNS=runs/det
mkdir -p "$RUNS"
timed() { local s; s=$(date +%s); "$@" || return; echo "$(($(date +%s) - s)) s: ${*:2:9}" >> "$RUNS/$NAME.times"; }

scenes() {  # folder, split, seed, count, styles...
  local out=$1 split=$2 seed=$3 count=$4
  shift 4
  [ -f "$out/ImageSets/Main/$split.txt" ] ||
    timed "$GOOGLENET" data scenes --out "$out" --split "$split" --seed "$seed" --count "$count" --style "$@"
  [ -s "$RUNS/proposals_$(basename "$out")_$split.json" ] ||
    timed "$GOOGLENET" detect proposals --data "$out" --split "$split" --method ss2x --workers "$WORKERS" --json \
      > "$RUNS/proposals_$(basename "$out")_$split.json"
}

scenes data/mix test 0 300 clutter texture photo  # the test scenes every model is scored on
validation=100
[ ${#STYLES[@]} -eq 3 ] && validation=300  # then data/NAME's test scenes are data/mix's
for part in "$NAME:0" "${NAME}1:1" "${NAME}2:2"; do
  folder=data/${part%%:*}
  scenes "$folder" train "${part##*:}" $((400 * ${#STYLES[@]})) "${STYLES[@]}"
  scenes "$folder" test 0 "$validation" "${STYLES[@]}"
done

# name, scenes, weights it starts from, seed, learning rate
for cycle in "${NAME}0 $NAME runs/fashion_mnist 0 0.01" "${NAME}0b $NAME $RUNS/${NAME}0 1 0.005" \
  "${NAME}0c $NAME $RUNS/${NAME}0b 2 0.005" "${NAME}0d $NAME $RUNS/${NAME}0c 3 0.005" \
  "${NAME}0e $NAME $RUNS/${NAME}0d 4 0.005" "${NAME}1e ${NAME}1 $RUNS/${NAME}0d 5 0.005" \
  "${NAME}1f ${NAME}2 $RUNS/${NAME}1e 6 0.005" "${NAME}0f ${NAME}2 $RUNS/${NAME}0e 7 0.005"; do
  read -r model data start seed lr <<< "$cycle"
  [ -f "$RUNS/$model/model.safetensors" ] && continue
  resume=()
  [ -f "$RUNS/$model/checkpoint.pt" ] && resume=(--resume)
  timed "$GOOGLENET" detect train --config configs/detect_scenes.yaml --data.root "data/$data" \
    --run.cpu_amp "$CPU_AMP" --model.weights "$start/model.safetensors" --out "$RUNS/$model" \
    --run.seed "$seed" --optim.lr "$lr" "${resume[@]}"
done

# each model's SVMs on the scenes it was trained on
for fitted in "${NAME}0e:$NAME" "${NAME}1e:${NAME}1" "${NAME}1f:${NAME}2" "${NAME}0f:${NAME}2"; do
  model=${fitted%%:*}
  weights=$RUNS/$model/model.safetensors
  [ -f "$RUNS/$model/model.svm.safetensors" ] ||
    timed "$GOOGLENET" detect fit-svm --checkpoint "$weights" --data "data/${fitted##*:}" --workers "$WORKERS" \
      --json > "$RUNS/svm_$model.json"
  [ -s "$RUNS/eval_${model}_svm_flip.json" ] ||
    timed "$GOOGLENET" detect evaluate --checkpoint "$weights" --data data/mix --workers "$WORKERS" --svm --flip \
      --json > "$RUNS/eval_${model}_svm_flip.json"
done
for ensemble in "_ensemble 0e 1e" "_ensemble6 0f 1f"; do  # five cycles, six cycles
  read -r tag first second <<< "$ensemble"
  [ -s "$RUNS/eval_${NAME}${tag}_svm_flip.json" ] ||
    timed "$GOOGLENET" detect evaluate --checkpoint "$RUNS/$NAME$first/model.safetensors" \
      "$RUNS/$NAME$second/model.safetensors" --data data/mix --workers "$WORKERS" --svm --flip --json \
      > "$RUNS/eval_${NAME}${tag}_svm_flip.json"
done
python3 - "$RUNS" "$NAME" <<'EOF'
import json, sys
runs, name = sys.argv[1:]
for tag in (f"{name}0e", f"{name}1e", f"{name}_ensemble", f"{name}0f", f"{name}1f", f"{name}_ensemble6"):
    result = json.load(open(f"{runs}/eval_{tag}_svm_flip.json"))
    styles = "  ".join(f"{s} {100 * v['map']:.2f}%" for s, v in sorted(result.get("styles", {}).items()))
    print(f"{tag:>16}: mAP {100 * result['map']:.2f}%  {styles}")
EOF
