#!/usr/bin/env bash
# The knowledge corpus (src/data/people.ts) at several seeds and budgets: `retro demo` runs whose summaries feed
# docs/replication.md (experiments/replicate.ts: Fig. 2, Table 1 and §5.4 on this corpus, mean ± sd over seeds).
#   SEEDS="1234 2 3" (default)  one demo per seed, default sizes (~15 min each on 2 cores)
#   TAG=-big PRETRAIN=6000 SFT=1500 D=256   a larger budget: what the 15-minute demo cannot reach (see README)
# Each run: runs/knowledge$TAG-seed$SEED (resumable: a re-run reuses finished stages); its results/summary.json is
# copied to experiments/results/knowledge$TAG-seed$SEED.json.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"1234 2 3"}
TAG=${TAG:-}
args=()
[ -n "${PRETRAIN:-}" ] && args+=(--pretrain-steps "$PRETRAIN")
[ -n "${FIT:-}" ] && args+=(--fit-steps "$FIT")
[ -n "${SFT:-}" ] && args+=(--sft-steps "$SFT")
[ -n "${D:-}" ] && args+=(--d "$D")
[ -n "${LAYERS:-}" ] && args+=(--layers "$LAYERS")
mkdir -p experiments/results
for s in $SEEDS; do
  out=runs/knowledge$TAG-seed$s
  node bin/retro.js demo --out "$out" --seed "$s" "${args[@]}"
  cp "$out/results/summary.json" "experiments/results/knowledge$TAG-seed$s.json"
done
