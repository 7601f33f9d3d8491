#!/bin/bash
# Issue 12, item 5: the cooling-time head with the training recipe on the default sample
# (benchmarks/recipe_seeds.sh simulates it): the `all` network with model.regression=true
# at each loss.regression_weight given (default 0.2), one training seed, the same folds as
# the seeded ablations; each run's metrics.json has the `regression` block (scatter, bias,
# 68/95% coverage beside the least-squares fit of log10 t_cool on log10 c_SB on the same
# folds) and the classification with the head.
#   bash benchmarks/regression_default.sh [WEIGHTS...]     (about 25 minutes each in bf16)
#   SEED=1 bash benchmarks/regression_default.sh 0.2       (another training seed: ...-s1)
#   SCALING=dataset bash benchmarks/regression_default.sh  (one brightness scale for all
#        maps, preprocess.scaling=dataset: regression-dataset-w0.2)
#   SAMPLE=xmm SCALING=dataset bash benchmarks/regression_default.sh   (the XMM-Newton
#        mocks of benchmarks/recipe_seeds.sh: regression-xmm-dataset-w0.2)
#   KEEP_CHECKPOINTS=1 ...   keeps the fold models, for `coolcore export`
set -eu
cd "$(dirname "$0")/.."
CC=${CC:-.venv/bin/coolcore}
DATA=${DATA:-data}
OUT=${OUT:-results/recipe-cpu}
RECIPE=(--set train.epochs=16 --set train.schedule=cosine --set train.warmup_epochs=1
        --set train.augment=dihedral --set model.crop_source=full)
log() { echo "[$(date +%H:%M:%S)] $*"; }
SEED=${SEED:-0}
SCALING=${SCALING:-image}
SAMPLE=${SAMPLE:-default}
label=$SAMPLE; [ "$SCALING" = dataset ] && label=$SAMPLE-dataset
[ "$label" = default-dataset ] && label=dataset   # the names of the first runs
for w in "${@:-0.2}"; do
  name=regression-$label-w$w; [ "$SEED" != 0 ] && name=$name-s$SEED
  [ -d "$OUT/$name" ] && continue
  resume=""; [ -d "$OUT/$name.partial" ] && resume="--resume"
  log "cv $name"
  $CC cv "$DATA/$SAMPLE" --config cpu "${RECIPE[@]}" --variant all --seed "$SEED" \
    --set preprocess.scaling="$SCALING" --set model.regression=true \
    --set "loss.regression_weight=$w" --out "$OUT/$name" --no-progress $resume
  # run folders are committed without checkpoints (KEEP_CHECKPOINTS=1 keeps them to export)
  [ "${KEEP_CHECKPOINTS:-0}" = 1 ] || find "$OUT/$name" -name '*.ckpt' -delete
done
log "done"
