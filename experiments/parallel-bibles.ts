/**
 * Parallel Bibles: train on the King James Version, put the World English Bible in the database as a
 * retrieval-only dataset, hold out KJV chapters. A held-out chapter's paraphrase (WEB) is retrievable, its
 * words were never trained on. Per seed: a GPT pretrained on KJV, then continued on identical tokens by
 * GPT-fitting and by Retro-fitting (each recipe); held-out loss with the controls of `retro eval ppl --controls`
 * (the protocol: experiments/lib/fitting.ts). Needs `retro corpus install kjv web` (Debian's sword-text-kjv,
 * sword-text-web).
 *
 *   node --import tsx experiments/parallel-bibles.ts [--seeds 3] [--pretrain 1500] [--fit 800] [--only name;name]
 *       [--d 128 --layers 4] [--work runs/bibles] [--out experiments/results/parallel-bibles.json] [--report]
 * --report prints the tables of the measured runs (for --fit) without training. Another model size (--d, --layers)
 * keeps its runs in WORK/d{d}-l{layers} and its results in parallel-bibles-d{d}-l{layers}.json.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { buildDatabase } from "../src/db/build.ts";
import { Database } from "../src/db/database.ts";
import { corpusDataset, corpusEntry, isInstalled } from "../src/data/catalogue.ts";
import { loadRows, report, runFitting } from "./lib/fitting.ts";

const { values: a } = parseArgs({
  options: {
    seeds: { type: "string", default: "3" },
    pretrain: { type: "string", default: "1500" },
    fit: { type: "string", default: "800" },
    only: { type: "string" },
    work: { type: "string", default: "runs/bibles" },
    d: { type: "string", default: "128" },
    layers: { type: "string", default: "4" },
    out: { type: "string" },
    report: { type: "boolean", default: false },
  },
});
process.env.RETRO_QUIET ??= "1";
for (const n of ["kjv", "web"]) {
  if (!isInstalled(corpusEntry(n))) {
    console.error(
      `corpus "${n}" is not installed: retro corpus install kjv web  (apt-get install -y sword-text-kjv ` +
        `sword-text-web, as root)`,
    );
    process.exit(3);
  }
}
const chunk = 16,
  seq = 128,
  work = path.resolve(a.work!);
// databases over the same documents, tokenizer and split: dense (LSA + HNSW, the default), BM25, and BM25
// with 32-token chunks
const dbDir = path.join(work, "db"),
  bm25Dir = path.join(work, "db-bm25"),
  bm25c32Dir = path.join(work, "db-bm25-c32");
const dbConfig = {
  datasets: [corpusDataset("kjv", 1), corpusDataset("web", 0)],
  tokenizer: { kind: "bpe", vocabSize: 4096 },
  chunkLength: chunk,
  validFraction: 0.05,
  query: { seq, candidates: 200, keep: 20, blockSize: 256 },
};
const only = a.only ? a.only.split(";") : null;
const dbs: [string, Record<string, unknown>][] = [
  [dbDir, {}],
  [bm25Dir, { index: { description: "BM25" } }],
];
if (!only || only.some((o) => o.includes("chunk 32")))
  dbs.push([bm25c32Dir, { index: { description: "BM25" }, chunkLength: 32 }]);
for (const [dir, over] of a.report ? [] : dbs) {
  if (!fs.existsSync(path.join(dir, "manifest.json")) || !new Database(dir).manifest.neighbours?.valid)
    await buildDatabase(dir, { ...dbConfig, ...over });
}
const D = Number(a.d),
  layers = Number(a.layers),
  defaultSize = D === 128 && layers === 4;
const size = { d: D, heads: 4, layers, seq, r: 2 * chunk };
const runs = defaultSize ? work : path.join(work, `d${D}-l${layers}`);
const out = path.resolve(a.out ?? `experiments/results/parallel-bibles${defaultSize ? "" : `-d${D}-l${layers}`}.json`);
const retro = { ...size, model: "retro", cca_layers: layers >= 4 ? [2, 4] : [layers], k: 2 };
const common = {
  db: dbDir,
  batch: 16,
  evalEvery: 1e9,
  saveEvery: 1e9,
  evalBatches: -1,
  threads: 2,
  lr: 1e-3,
  minLr: 1e-4,
  warmup: 50,
};
const VARIANTS: Record<string, Record<string, unknown>> = {
  "gpt-fitting": {},
  "retro-fitting (default recipe)": { model: retro },
  "retro-fitting + retrieval lr x3": { model: retro, retrievalLr: 3 },
  "retro-fitting, BM25 neighbours": { model: retro, db: bm25Dir },
  "retro-fitting, BM25 neighbours + retrieval lr x3": { model: retro, db: bm25Dir, retrievalLr: 3 },
  "retro-fitting, BM25 neighbours, decoder frozen for the first 400 steps": {
    model: retro,
    db: bm25Dir,
    freezeDecoderSteps: 400,
  },
  // the paper's Fig. 3: only the retrieval path trains (RETRO's frozen Retro-fitting)
  "retro-fitting, BM25 neighbours, decoder frozen": { model: retro, db: bm25Dir, freezeDecoder: true },
  "retro-fitting, BM25 neighbours, chunk 32": { model: { ...retro, chunk: 32, r: 64 }, db: bm25c32Dir },
  "retro-fitting, BM25 neighbours + null key/value": { model: { ...retro, retrieval_null_kv: true }, db: bm25Dir },
};
const setup = {
  work: runs,
  out,
  db: dbDir,
  gptControlDbs: { bm25: bm25Dir },
  size,
  common,
  variants: VARIANTS,
  preSteps: Number(a.pretrain),
  fitSteps: Number(a.fit),
  seeds: Number(a.seeds),
  only,
  describe: { dbConfig, retro },
};
const rows = a.report ? loadRows(setup.out) : await runFitting(setup);
console.log(report(setup, rows));
