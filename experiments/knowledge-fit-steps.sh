#!/usr/bin/env bash
# How many fitting steps does result (a) need? On a finished `retro demo` folder (group D, the demo's GPT):
# GPT-fitting and Retro-fitting (retrieval part started from the decoder) with the demo's recipe — A and D half and
# half, lr 3e-4 → 3e-5, retrieval part ×RETRIEVAL_LR (the demo's 3) — but STEPS steps each
# (the demo: 400), at LR → MIN_LR if given; then result (a) for both (experiments/knowledge-fit.ts). ~12 minutes on
# 2 cores at 1,200 steps. The sweep of docs/knowledge.md (results/knowledge-fit-lr.json) is this at STEPS=400 with
# RETRIEVAL_LR 1, 3, 5, 10, LR=1e-3 MIN_LR=1e-4, and MIN_LR=3e-4 (a constant rate), PRECISION=bf16.
#
#   STEPS=1200 bash experiments/knowledge-fit-steps.sh DEMO_DIR OUT_DIR
#   STEPS=400 LR=1e-3 MIN_LR=1e-4 bash experiments/knowledge-fit-steps.sh DEMO_DIR OUT_DIR
set -euo pipefail
DEMO=${1:?usage: knowledge-fit-steps.sh DEMO_DIR OUT_DIR}
OUT=${2:?usage: knowledge-fit-steps.sh DEMO_DIR OUT_DIR}
STEPS=${STEPS:-1200}
LR=${LR:-3e-4}
MIN_LR=${MIN_LR:-3e-5}
RETRIEVAL_LR=${RETRIEVAL_LR:-3}
PRECISION=${PRECISION:-fp32} # the demo multiplies in bf16 where the CPU has AVX512-BF16
cd "$(dirname "$0")/.."
FIT=(--db "$DEMO/db" --init "$DEMO/gpt" --steps "$STEPS" --lr "$LR" --min-lr "$MIN_LR" --warmup 20 --seed 1234
  --precision "$PRECISION" --eval-every 200 --save-every 200 --resume)
node bin/retro.js train --out "$OUT/gpt-fit" "${FIT[@]}"
node bin/retro.js train --out "$OUT/retro-fit" --model retro --retrieval-lr "$RETRIEVAL_LR" --retrieval-init decoder "${FIT[@]}"
node --import tsx experiments/knowledge-fit.ts --dir "$DEMO" --out "$OUT/knowledge-fit.json" \
  --run "GPT-fitting ($STEPS steps, lr $LR)=$OUT/gpt-fit" \
  --run "Retro-fitting, decoder init ($STEPS steps, lr $LR)=$OUT/retro-fit"
