#!/usr/bin/env bash
# Does a Retro read paraphrased neighbours when reading is learned with the rest? On a finished `retro demo`
# folder (its database and its 3,000-step GPT), three runs on the same tokens as the demo's GPT (d 128, 4 layers,
# seq 256, batch 8, seed 1234):
#   retro-scratch    a Retro pretrained from scratch, 3,000 steps, the GPT's schedule (lr 3e-3 → 3e-4)
#   gpt-early        the GPT's first 1,000 steps (the same schedule, stopped there: before it learns to read)
#   gpt-fit-early / retro-fit-early   GPT-fitting and Retro-fitting of gpt-early, 2,000 steps each, lr 2e-3 → 3e-4
# then result (a) of the demo for each (held-out perplexity on B's other biographies, fact tokens apart, the
# neighbour controls): experiments/knowledge-fit.ts. About 40 minutes on 2 cores.
#
#   bash experiments/knowledge-pretrain.sh DEMO_DIR OUT_DIR
set -euo pipefail
DEMO=${1:?usage: knowledge-pretrain.sh DEMO_DIR OUT_DIR}
OUT=${2:?usage: knowledge-pretrain.sh DEMO_DIR OUT_DIR}
cd "$(dirname "$0")/.."
DB=$DEMO/db
MODEL=(--d 128 --heads 4 --layers 4 --seq 256 --seed 1234 --save-every 500)
mkdir -p "$OUT"
node bin/retro.js train --db "$DB" --out "$OUT/retro-scratch" --model retro "${MODEL[@]}" \
  --steps 3000 --lr 3e-3 --min-lr 3e-4 --warmup 100 --resume
node bin/retro.js train --db "$DB" --out "$OUT/gpt-early" --model gpt "${MODEL[@]}" \
  --steps 3000 --stop-after 1000 --lr 3e-3 --min-lr 3e-4 --warmup 100 --resume
EARLY=$OUT/gpt-early/checkpoints/step-001000
for m in gpt retro; do
  node bin/retro.js train --db "$DB" --out "$OUT/$m-fit-early" --init "$EARLY" --model $m --seed 1234 \
    --save-every 500 --steps 2000 --lr 2e-3 --min-lr 3e-4 --warmup 20 --resume
done
node --import tsx experiments/knowledge-fit.ts --dir "$DEMO" --out "$OUT/knowledge-fit.json" \
  --run "GPT (demo, 3,000 steps)=gpt" --run "Retro from scratch (3,000 steps)=$OUT/retro-scratch" \
  --run "GPT-fitting of GPT@1,000 (2,000 steps)=$OUT/gpt-fit-early" \
  --run "Retro-fitting of GPT@1,000 (2,000 steps)=$OUT/retro-fit-early" \
  --run "GPT-fitting (demo, 400 steps)=gpt-fit" --run "Retro-fitting (demo, 400 steps)=retro-fit"
