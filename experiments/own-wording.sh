#!/usr/bin/env bash
# Does what the demo tuned generalise to people described in wording it never saw? 8 fictional people written by
# hand (experiments/data/own-wording/: not from the corpus's sentence forms, facts in any order, several to a
# sentence) are added to a COPY of a demo's database with `retro db add`, and 32 questions about their birth city,
# birth year, occupation and employer (also in wording of our own) are asked of the demo's tuned models with the
# top-2 retrieved passages and closed book. The demo's own database is not touched.
#   bash experiments/own-wording.sh [DEMO_DIR=runs/demo]      → experiments/results/own-wording.json, and EM per
#   asked attribute (the part of each question id after ":") in experiments/results/own-wording-by-attribute.json
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${1:-runs/demo}
data=experiments/data/own-wording
tmp=$(mktemp -d /tmp/retro-own-wording-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -r "$demo/db" "$tmp/db"
node bin/retro.js db add --db "$tmp/db" --name own-wording --jsonl "$data/people.jsonl"
node bin/retro.js eval qa --ckpt InstructRetro="$demo/sft-retro" --ckpt InstructGPT="$demo/sft-gpt" --db "$tmp/db" \
  --data "$data/qa.jsonl" --passages retrieve --retriever index --top-k 2 --variants rag,none --out "$tmp/qa"
mkdir -p experiments/results
cp "$tmp/qa/results.json" experiments/results/own-wording.json
# EM per attribute, from the answers of each model and variant (files MODEL.qa.VARIANT.jsonl)
node -e '
const fs = require("node:fs"), dir = process.argv[1], out = {};
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".jsonl")).sort()) {
  const by = {};
  for (const l of fs.readFileSync(`${dir}/${f}`, "utf8").split("\n").filter(Boolean)) {
    const r = JSON.parse(l), a = r.id.split(":").pop();
    by[a] ??= { right: 0, asked: 0 };
    by[a].right += r.em;
    by[a].asked += 1;
  }
  out[f.replace(/\.jsonl$/, "")] = by;
}
fs.writeFileSync("experiments/results/own-wording-by-attribute.json", JSON.stringify(out, null, 1) + "\n");
for (const [k, v] of Object.entries(out))
  console.log(k.padEnd(28), Object.entries(v).map(([a, x]) => `${a} ${x.right}/${x.asked}`).join("  "));
' "$tmp/qa"
