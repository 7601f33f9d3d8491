#!/bin/bash
# Issue 12: the worked example on real data. A network trained on XMM-Newton mocks with
# the cooling-time head and one brightness scale (benchmarks/regression_default.sh with
# SAMPLE=xmm SCALING=dataset, fold models kept) is exported and applied to the real
# XMM-Newton observation of Abell 1835 in examples/a1835/ (counts, exposure, z = 0.2532).
# ACCEPT (Cavagnolo et al. 2009) gives t_cool = 0.54 Gyr at 20 kpc for it.
#   bash benchmarks/a1835_tcool.sh        (about 25 minutes for the training with bf16)
# Writes results/a1835/: the prediction table, its explain figure, the model's record.
set -eu
cd "$(dirname "$0")/.."
CC=${CC:-.venv/bin/coolcore}
RUN=${RUN:-runs/a1835/regression-xmm-dataset-w0.2}   # a cv run with its fold models
MODEL=${MODEL:-runs/a1835/model}
DEST=${DEST:-results/a1835}
IMG=examples/a1835/a1835_xmm_img.fits.gz
EXP=examples/a1835/a1835_xmm_exp.fits.gz
if [ ! -d "$MODEL" ]; then
  if [ ! -d "$RUN" ]; then   # the run of results/recipe-cpu/regression-xmm-dataset-w0.2, again
    [ -f data/xmm/catalog.csv ] || $CC simulate data/xmm --clusters 318 --seed 0 --workers 2 \
      --no-progress --instrument xmm   # as benchmarks/recipe_seeds.sh makes it
    KEEP_CHECKPOINTS=1 OUT="$(dirname "$RUN")" SAMPLE=xmm SCALING=dataset \
      bash benchmarks/regression_default.sh 0.2
  fi
  $CC export "$RUN" --out "$MODEL"
fi
mkdir -p "$DEST"
$CC predict "$MODEL" "$IMG" --exposure "$EXP" --redshift 0.2532 --out "$DEST/a1835.csv" \
  --force --no-progress
$CC explain "$MODEL" "$IMG" --exposure "$EXP" --redshift 0.2532 --out "$DEST/explain" \
  --force --no-progress
cp "$MODEL/model.json" "$DEST/model.json"
cat "$DEST/a1835.csv"
