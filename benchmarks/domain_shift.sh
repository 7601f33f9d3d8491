#!/bin/bash
# The domain-shift table of the README (issue 11): simulate the training samples (the
# emissivity maps and XMM mocks, seed 0, 318 clusters) and four test samples of other
# clusters (seed 1, 106 clusters: emissivity, XMM, Chandra, eROSITA), cross-validate the
# `all` network at PRESET on each training sample, then test each model on every test
# sample beside the concentration (benchmarks/domain_shift.py). Each step skips what is
# done and a cv resumes where it stopped, so the script can run in chunks:
#   bash benchmarks/domain_shift.sh [PRESET]      (default: cpu; hours on 2 cores)
set -eu
cd "$(dirname "$0")/.."
PRESET=${1:-cpu}
CC=".venv/bin/coolcore"
OUT=results/shift-$PRESET
mkdir -p "$OUT" data/shift
log() { echo "[$(date +%H:%M:%S)] $*"; }
sim() {  # NAME SEED CLUSTERS [--instrument X]
  local name=$1 seed=$2 n=$3; shift 3
  if [ ! -f "data/shift/$name/catalog.csv" ]; then
    log "simulate $name"
    $CC simulate "data/shift/$name" --clusters "$n" --seed "$seed" --workers 2 --no-progress "$@"
  fi
}
cv() {  # NAME
  local name=$1
  [ -f "$OUT/$name/run.json" ] && return 0
  local resume=""; [ -d "$OUT/$name.partial" ] && resume="--resume"
  log "cv $name"
  $CC cv "data/shift/$name" --config "$PRESET" --variant all --out "$OUT/$name" --no-progress $resume
}
sim emissivity 0 318
sim xmm 0 318 --instrument xmm
sim test-emissivity 1 106
sim test-xmm 1 106 --instrument xmm
sim test-chandra 1 106 --instrument chandra
sim test-erosita 1 106 --instrument erosita
cv emissivity
cv xmm
log "domain shift"
.venv/bin/python benchmarks/domain_shift.py \
  --train "emissivity=$OUT/emissivity" --train "xmm=$OUT/xmm" \
  --test emissivity=data/shift/test-emissivity --test xmm=data/shift/test-xmm \
  --test chandra=data/shift/test-chandra --test erosita=data/shift/test-erosita --out "$OUT"
find "$OUT" -name '*.ckpt' -delete   # run folders are committed without checkpoints
log "done"
