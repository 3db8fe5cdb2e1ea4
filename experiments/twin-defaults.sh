#!/usr/bin/env bash
# Do the defaults read an exact twin? Issue 22's check of `retro db build` / `retro train` with no flag but the chunk
# length: the labelled synthetic twin corpus (`retro corpus twins`: random pseudo-word documents, their exact twins
# in a retrieval-only dataset), a GPT pretrained STEPS steps, then STEPS more steps each way — GPT-fitting and
# Retro-fitting — and the held-out perplexity of both (documents never trained on, whose twins are in the database).
# Exits 1 when Retro-fitting's perplexity is above RATIO (0.5) × GPT-fitting's. ~8 min on 2 cores.
#
#   bash experiments/twin-defaults.sh [WORK_DIR]      (env: STEPS=400 CHUNK=16 RATIO=0.5 DOCS=6000)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/twin-defaults}
STEPS=${STEPS:-400}
CHUNK=${CHUNK:-16}
RATIO=${RATIO:-0.5}
DOCS=${DOCS:-6000}
retro() { node bin/retro.js "$@"; }
export RETRO_QUIET=1
if [ -e "$W" ] && [ -n "$(ls -A "$W")" ]; then echo "twin-defaults: $W is not empty (give another folder)" >&2; exit 2; fi
mkdir -p "$W"
retro corpus twins --out "$W/corpus" --docs "$DOCS"
retro db build --out "$W/db" --jsonl "$W/corpus/docs.jsonl" --jsonl "$W/corpus/twins.jsonl:0" --chunk-length "$CHUNK"
retro train --db "$W/db" --out "$W/gpt" --model gpt --steps "$STEPS"
retro train --db "$W/db" --out "$W/gpt-fit" --init "$W/gpt" --model gpt --steps "$STEPS"
retro train --db "$W/db" --out "$W/retro-fit" --init "$W/gpt" --model retro --steps "$STEPS"
retro eval ppl --ckpt "$W/gpt-fit" --json > "$W/gpt-fit.ppl.json"
retro eval ppl --ckpt "$W/retro-fit" --json > "$W/retro-fit.ppl.json"
retro eval ppl --ckpt "$W/retro-fit" --gate 0 --json > "$W/retro-fit-gate0.ppl.json"
node -e '
const fs = require("fs"), [w, ratio, steps, chunk] = process.argv.slice(1);
const read = (f) => JSON.parse(fs.readFileSync(`${w}/${f}.ppl.json`, "utf8").trim().split("\n").pop());
const g = read("gpt-fit"), r = read("retro-fit"), z = read("retro-fit-gate0");
const q = r.ppl / g.ppl, ok = q <= Number(ratio);
const out = { steps: Number(steps), chunk: Number(chunk), gptFitting: g.ppl, retroFitting: r.ppl, retroGate0: z.ppl,
  ratio: q, target: Number(ratio), pass: ok };
fs.writeFileSync(`${w}/result.json`, JSON.stringify(out, null, 2) + "\n");
console.log(`held-out perplexity after ${steps} steps each way (chunk ${chunk}, every other setting at its default):`);
console.log(`  GPT-fitting ${g.ppl.toFixed(2)}, Retro-fitting ${r.ppl.toFixed(2)} (gate 0: ${z.ppl.toFixed(2)})`);
console.log(`  ratio ${q.toFixed(3)} — target ≤ ${ratio}: ${ok ? "met" : "NOT met"}`);
process.exit(ok ? 0 : 1);
' "$W" "$RATIO" "$STEPS" "$CHUNK"
