#!/usr/bin/env bash
# Does a Retro-fit learn to read paraphrased neighbours when the fitting text holds facts the GPT never saw? On a
# finished `retro demo` folder with a group D (the default): GPT-fitting and Retro-fitting of the demo's GPT on D
# alone (--blend people-a=0: every fitting token is new to the model, and another biography of each D person is
# in the database), longer and at a higher learning rate than the demo's fits; then result (a) of the
# demo for each (experiments/knowledge-fit.ts).
#
#   STEPS=1500 LR=1e-3 RLR=3 bash experiments/knowledge-dfit.sh DEMO_DIR OUT_DIR
set -euo pipefail
DEMO=${1:?usage: knowledge-dfit.sh DEMO_DIR OUT_DIR}
OUT=${2:?usage: knowledge-dfit.sh DEMO_DIR OUT_DIR}
STEPS=${STEPS:-1500}
LR=${LR:-1e-3}
RLR=${RLR:-3}
EXTRA=${EXTRA:-}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
FIT=(--db "$DEMO/db" --init "$DEMO/gpt" --blend people-a=0 --steps "$STEPS" --lr "$LR" --min-lr 1e-4
  --warmup 50 --seed 1234 --save-every 500 --eval-every 250 --resume)
node bin/retro.js train --out "$OUT/gpt-fit" "${FIT[@]}"
# shellcheck disable=SC2086
node bin/retro.js train --out "$OUT/retro-fit" --model retro --retrieval-lr "$RLR" $EXTRA "${FIT[@]}"
node --import tsx experiments/knowledge-fit.ts --dir "$DEMO" --out "$OUT/knowledge-fit.json" \
  --run "GPT (demo)=gpt" --run "GPT-fitting on D ($STEPS steps)=$OUT/gpt-fit" \
  --run "Retro-fitting on D ($STEPS steps)=$OUT/retro-fit" \
  --run "GPT-fitting (demo)=gpt-fit" --run "Retro-fitting (demo)=retro-fit"
