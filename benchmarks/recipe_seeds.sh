#!/bin/bash
# Issue 12: the training recipe against the cpu preset as shipped, three seeds each, on the
# default sample (318 clusters x 3 projections, seed 0), with the concentration baselines on
# the same folds: two ablation runs of the `all` network (baseline always included).
#   recipe:  16 epochs, cosine schedule after a one-epoch warm-up, dihedral augmentation,
#            the auxiliary crop cut from the full-resolution map (docs/method.md)
#   default: the cpu preset as shipped (8 epochs, step schedule)
# Each ablation resumes where it stopped, so the script can run in chunks:
#   bash benchmarks/recipe_seeds.sh        (hours on 2 cores; about half with native bf16)
# then: python benchmarks/ablation_readme.py results/recipe-cpu/recipe (and .../default)
set -eu
cd "$(dirname "$0")/.."
CC=${CC:-.venv/bin/coolcore}
DATA=data/default
OUT=results/recipe-cpu
RECIPE=(--set train.epochs=16 --set train.schedule=cosine --set train.warmup_epochs=1
        --set train.augment=dihedral --set model.crop_source=full)
log() { echo "[$(date +%H:%M:%S)] $*"; }
mkdir -p "$OUT"
if [ ! -f "$DATA/catalog.csv" ]; then
  log "simulate $DATA"
  $CC simulate "$DATA" --clusters 318 --seed 0 --workers 2 --no-progress
fi
ablation() {  # NAME [OPTIONS...]
  local name=$1; shift
  [ -d "$OUT/$name" ] && return 0   # finished (an unfinished run is $name.partial)
  local resume=""; [ -d "$OUT/$name.partial" ] && resume="--resume"
  log "ablation $name"
  $CC ablation "$DATA" --config cpu "$@" --methods all --repeats 3 --out "$OUT/$name" \
    --no-progress $resume
  find "$OUT/$name" -name '*.ckpt' -delete   # run folders are committed without checkpoints
}
ablation recipe "${RECIPE[@]}"
ablation default
log "done"
