#!/usr/bin/env bash
# Where a Retro-fit's retrieval part starts: on a finished `retro demo` folder (its database with group D, its GPT
# and GPT-fit), Retro-fits with the demo's recipe (400 steps on A and D, lr 3e-4 → 3e-5, retrieval part ×3) whose
# encoder and CCA start copied from the decoder (--retrieval-init decoder), with and without rotary positions in
# CCA; then result (a) of the demo for them beside the demo's GPT-fit and random-init Retro-fit
# (experiments/knowledge-fit.ts). About 8 minutes on 2 cores.
#
#   bash experiments/knowledge-init.sh DEMO_DIR OUT_DIR
set -euo pipefail
DEMO=${1:?usage: knowledge-init.sh DEMO_DIR OUT_DIR}
OUT=${2:?usage: knowledge-init.sh DEMO_DIR OUT_DIR}
cd "$(dirname "$0")/.."
FIT=(--db "$DEMO/db" --init "$DEMO/gpt" --model retro --steps 400 --lr 3e-4 --min-lr 3e-5 --warmup 20
  --retrieval-lr 3 --seed 1234 --eval-every 100 --save-every 100 --resume)
node bin/retro.js train --out "$OUT/rope" "${FIT[@]}" --retrieval-init decoder
node bin/retro.js train --out "$OUT/norope" "${FIT[@]}" --retrieval-init decoder --no-retrieval-rope
node --import tsx experiments/knowledge-fit.ts --dir "$DEMO" --out "$OUT/knowledge-fit.json" \
  --run "GPT-fitting (demo)=gpt-fit" --run "Retro-fitting (demo)=retro-fit" \
  --run "Retro-fit, decoder init=$OUT/rope" --run "Retro-fit, decoder init, no rope=$OUT/norope"
