#!/usr/bin/env bash
# The main job end to end on the bundled corpus (about 10 minutes on 2 cores; every step resumes if re-run):
# Step 1 database -> Step 2 GPT pretraining, then Retro-fitting it -> Step 3 held-out perplexity -> curves -> generation.
set -euo pipefail
cd "$(dirname "$0")/.."
retro() { node bin/retro.js "$@"; }
retro db build --out runs/default-db
retro db inspect --db runs/default-db --split valid --sample 0,40,120
retro train --db runs/default-db --out runs/demo-gpt --model gpt --steps 400 --eval-every 100 --save-every 100 --resume
retro train --db runs/default-db --out runs/demo-retro --model retro --init runs/demo-gpt --cca-layers 2,4 \
  --steps 120 --lr 3e-4 --min-lr 3e-5 --warmup 20 --eval-every 40 --save-every 40 --resume
retro eval ppl --ckpt runs/demo-gpt --db runs/default-db
retro eval ppl --ckpt runs/demo-retro --db runs/default-db
retro eval ppl --ckpt runs/demo-retro --db runs/default-db --gate 0
retro plot gpt=runs/demo-gpt retro-fit=runs/demo-retro --out runs/demo-curves.svg
# generation: the Retro-fit continues a prompt, retrieving from the database each time a 64-token chunk completes
retro generate --ckpt runs/demo-retro --prompt "Mr. Speaker, Mr. Vice President, Members of Congress, the state of our Union" \
  --max-tokens 120 --temperature 0.8 --top-p 0.9 --seed 1 --show-neighbours
