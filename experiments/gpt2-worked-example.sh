#!/usr/bin/env bash
# Hugging Face GPT-2 → Retro → and back, end to end with the CLI:
#   a GPT2LMHeadModel folder → a database with GPT-2's tokenizer → Retro-fit for $STEPS steps (stopped half-way and
#   resumed) → held-out perplexity with and without neighbours → generation → the Retro's decoder exported at gate 0
#   → the PyTorch peer computes the same logits from the exported files (`retro eval logits --compare` exits 1
#   beyond 1e-5 of the largest logit).
#
#   bash experiments/gpt2-worked-example.sh OUT [GPT2_DIR]
#
# GPT2_DIR: a gpt2 folder you downloaded (config.json, model.safetensors, vocab.json, merges.txt). Without it the
# peer (../shared/peers/hf_gpt2.py; Debian's python3-torch) makes a random GPT-2 of SIZE=small (2 layers, d 128,
# 256 positions: minutes) or SIZE=124m (GPT-2 small's shape: 12 layers, d 768, 1,024 positions). STEPS (default 30),
# BATCH (default 4). OUT must not exist or be empty.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash experiments/gpt2-worked-example.sh OUT [GPT2_DIR]}
GPT2=${2:-}
STEPS=${STEPS:-30}
BATCH=${BATCH:-4}
SIZE=${SIZE:-small}
PY=/usr/bin/python3
PEER=../shared/peers/hf_gpt2.py
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then echo "$OUT is not empty" >&2; exit 2; fi
mkdir -p "$OUT"
retro() { node bin/retro.js "$@"; }
step() { echo; echo "== $*"; }

if [ -z "$GPT2" ]; then
  GPT2=$OUT/gpt2
  case $SIZE in
    small) shape=(--layers 2 --d 128 --heads 4 --ctx 256) ;;
    124m) shape=(--layers 12 --d 768 --heads 12 --ctx 1024) ;;
    *) echo "SIZE is small or 124m" >&2; exit 2 ;;
  esac
  step "a random GPT-2 ($SIZE) from the peer, in Hugging Face's layout"
  $PY $PEER make "$GPT2" "${shape[@]}" --seed 0
fi

step "a database with GPT-2's tokenizer (Moby-Dick, bundled; chunk 64)"
echo '{"datasets": [{"name": "moby-dick", "source": "bundled", "path": "moby-dick", "weight": 1}]}' > "$OUT/db.json"
# samples as long as the model's context (n_positions): each training sequence is one sample
CTX=$(node -e 'const c = require(process.argv[1]); console.log(c.n_positions ?? c.n_ctx)' "$(realpath "$GPT2")/config.json")
retro db build --out "$OUT/db" --config "$OUT/db.json" --tokenizer gpt2 --seq "$CTX"

step "Retro-fit the GPT-2 folder for $STEPS steps (decoder unfrozen, CCA at the default layers), stopped half-way"
retro train --db "$OUT/db" --out "$OUT/rfit" --model retro --init "hf:$GPT2" --steps "$STEPS" --batch "$BATCH" \
  --eval-batches 2 --stop-after $((STEPS / 2))
step "…and resumed to the end"
retro train --out "$OUT/rfit" --resume

step "held-out perplexity: the GPT-2 folder itself, the Retro-fit with its neighbours, and its decoder alone"
retro eval ppl --ckpt "hf:$GPT2" --db "$OUT/db" --batches 8 --json
retro eval ppl --ckpt "$OUT/rfit" --batches 8 --json
retro eval ppl --ckpt "$OUT/rfit" --batches 8 --gate 0 --json

step "generate with retrieval (a chunk's neighbours fetched from the database as it completes)"
retro generate --ckpt "$OUT/rfit" --prompt "Call me Ishmael. Some years ago" --max-tokens 16

PORT=${PORT:-8093}
step "serve it (OpenAI-compatible, port $PORT) and ask for a completion"
retro serve --ckpt "$OUT/rfit" --port "$PORT" > "$OUT/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "localhost:$PORT/health" > /dev/null && break; sleep 1; done
curl -sf "localhost:$PORT/v1/completions" -H 'content-type: application/json' \
  -d '{"prompt": "Call me Ishmael. Some years ago", "max_tokens": 8}'
echo
kill $server

step "export the Retro-fit's decoder (gate 0) as a GPT2LMHeadModel folder, and the whole Retro"
retro export hf --ckpt "$OUT/rfit" --gate 0 --out "$OUT/exported"
retro export hf --ckpt "$OUT/rfit" --full --out "$OUT/exported-full"

step "the same logits in the peer (PyTorch, reading the exported files alone)"
ids=464,1893,286,262,995,318,257,1310,1110,13,632,373,1760,11,290,340,481,307,1760,757
$PY $PEER logits "$OUT/exported" --ids $ids --out "$OUT/peer-logits.f32"
retro eval logits --ckpt "hf:$OUT/exported" --ids $ids --compare "$OUT/peer-logits.f32"
retro eval logits --ckpt "$OUT/rfit" --gate 0 --ids $ids --compare "$OUT/peer-logits.f32"
echo; echo "done: $OUT"
