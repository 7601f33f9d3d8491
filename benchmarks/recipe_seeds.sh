#!/bin/bash
# Issue 12: the training recipe with three training seeds on the default sample
# (emissivity maps, 318 clusters x 3 projections, seed 0) and on a mock-observation sample
# (XMM-Newton mocks of the same clusters): for each sample and seed one ablation of the
# baseline and the `all` network, with the concentration baselines on the same folds.
#   recipe: the cpu preset with 16 epochs, cosine schedule after a one-epoch warm-up,
#           dihedral augmentation, the auxiliary crop cut from the full-resolution map
#           (docs/method.md)
# One ablation per seed (about 30 minutes with native bf16 on 2 cores), each skipped when
# finished and resumed when stopped, so the script runs in chunks:
#   bash benchmarks/recipe_seeds.sh [SEEDS...]        (default seeds: 0 1 2)
#   SAMPLES=xmm bash benchmarks/recipe_seeds.sh 0     (one sample: default, xmm or both)
#   SAMPLES=default-dataset bash benchmarks/recipe_seeds.sh
#        the default sample with one brightness scale for all maps (preprocess.scaling=
#        dataset: the log range of the whole data set instead of each map's own; the
#        baseline network only, about 20 minutes per seed)
#   SAMPLES=xmm-dataset bash benchmarks/recipe_seeds.sh
#        the same on the XMM-Newton mocks (one scale for their surface luminosity)
# then: python benchmarks/seed_table.py results/recipe-cpu/default-s* (and xmm-s*)
set -eu
cd "$(dirname "$0")/.."
CC=${CC:-.venv/bin/coolcore}
DATA=${DATA:-data}
OUT=${OUT:-results/recipe-cpu}
SEEDS=("${@:-0 1 2}")
SAMPLES=${SAMPLES:-default xmm}
RECIPE=(--set train.epochs=16 --set train.schedule=cosine --set train.warmup_epochs=1
        --set train.augment=dihedral --set model.crop_source=full
        --set preprocess.scaling=image)   # the cpu preset before it took one brightness scale
log() { echo "[$(date +%H:%M:%S)] $*"; }
mkdir -p "$OUT"
sim() {  # NAME [--instrument X]
  local name=$1; shift
  if [ ! -f "$DATA/$name/catalog.csv" ]; then
    log "simulate $DATA/$name"
    $CC simulate "$DATA/$name" --clusters 318 --seed 0 --workers 2 --no-progress "$@"
  fi
}
ablation() {  # SAMPLE SEED
  local name=$1-s$2 data=$1 extra=() methods=all
  if [ "${1%-dataset}" != "$1" ]; then   # one brightness scale: the baseline network only
    data=${1%-dataset}; extra=(--set preprocess.scaling=dataset); methods=baseline
  fi
  [ -d "$OUT/$name" ] && return 0   # finished (an unfinished run is $name.partial)
  local resume=""; [ -d "$OUT/$name.partial" ] && resume="--resume"
  log "ablation $name"
  $CC ablation "$DATA/$data" --config cpu "${RECIPE[@]}" "${extra[@]}" --methods $methods --repeats 1 \
    --seed "$2" --out "$OUT/$name" --no-progress $resume
  find "$OUT/$name" -name '*.ckpt' -delete   # run folders are committed without checkpoints
}
sim default
sim xmm --instrument xmm
for sample in $SAMPLES; do
  for seed in ${SEEDS[@]}; do ablation "$sample" "$seed"; done
done
log "done"
