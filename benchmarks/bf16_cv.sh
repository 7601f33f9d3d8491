#!/bin/bash
# bf16 against fp32 on a small cross-validation (issue 13): the `all` network at PRESET
# (default: cpu) on the demo sample (90 clusters x 3 projections, seed 0), seeds 0, 1, 2
# in each precision, deterministic; then seed 0 in bf16 again, to check that a
# deterministic run repeats its predictions exactly. Each cv that finished is skipped
# and an unfinished one resumes, so the script can run in chunks:
#   bash benchmarks/bf16_cv.sh [PRESET]     (about 40 minutes on a 2-core Zen 4 EPYC)
# then: python benchmarks/bf16_table.py results/bf16-PRESET
# bf16 needs a CPU with native bf16 (amx_bf16 or avx512_bf16) or a GPU; elsewhere the
# script stops at once, because emulated bf16 is several times slower than fp32.
set -eu
cd "$(dirname "$0")/.."
PRESET=${1:-cpu}
CC=${CC:-.venv/bin/coolcore}
DATA=data/bf16-demo
OUT=results/bf16-$PRESET
log() { echo "[$(date +%H:%M:%S)] $*"; }
if ! grep -q -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo; then
  echo "bf16_cv.sh: this CPU has no native bf16 (amx_bf16 or avx512_bf16 flag); nothing run" >&2
  exit 2
fi
mkdir -p "$OUT"
if [ ! -f "$DATA/catalog.csv" ]; then
  log "simulate $DATA"
  $CC simulate "$DATA" --clusters 90 --seed 0 --workers 2 --no-progress
fi
cv() {  # NAME PRECISION SEED
  local name=$1 precision=$2 seed=$3
  [ -d "$OUT/$name" ] && return 0   # finished (an unfinished run is $name.partial)
  local resume=""; [ -d "$OUT/$name.partial" ] && resume="--resume"
  log "cv $name"
  $CC cv "$DATA" --config "$PRESET" --variant all --precision "$precision" --seed "$seed" \
    --deterministic --out "$OUT/$name" --no-progress $resume
  find "$OUT/$name" -name '*.ckpt' -delete   # run folders are committed without checkpoints
}
for seed in 0 1 2; do
  cv "fp32-s$seed" 32 "$seed"
  cv "bf16-s$seed" bf16-mixed "$seed"
done
cv bf16-s0-again bf16-mixed 0
log "done"
