/**
 * The bundled corpus (State of the Union, Moby-Dick, Brown, WordNet glosses) trained, with a retrieval-only part
 * larger than nothing: the King James and World English Bibles, the Jargon File, FOLDOC and the Devil's
 * Dictionary (experiments/configs/bundled-bm25.json; 16-token chunks, BM25). Per seed a GPT pretrained on the
 * bundled training split, then GPT-fitting vs Retro-fitting on identical tokens (experiments/lib/fitting.ts), with
 * the controls and RETRO's overlap buckets. Unlike the parallel Bibles, no held-out text has a paraphrase in the
 * database by construction: what retrieval finds is whatever the corpus repeats.
 * Needs `retro corpus install kjv web jargon foldoc devil`.
 *
 *   node --import tsx experiments/bundled-corpus.ts [--seeds 3] [--pretrain 1500] [--fit 1600] [--only name;name]
 *       [--work runs/bundled] [--out experiments/results/bundled-corpus.json] [--report]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { buildDatabase } from "../src/db/build.ts";
import { Database } from "../src/db/database.ts";
import { corpusEntry, isInstalled } from "../src/data/catalogue.ts";
import { loadRows, report, runFitting } from "./lib/fitting.ts";

const { values: a } = parseArgs({
  options: {
    seeds: { type: "string", default: "3" },
    pretrain: { type: "string", default: "1500" },
    fit: { type: "string", default: "1600" },
    only: { type: "string" },
    work: { type: "string", default: "runs/bundled" },
    out: { type: "string", default: "experiments/results/bundled-corpus.json" },
    report: { type: "boolean", default: false },
  },
});
process.env.RETRO_QUIET ??= "1";
const corpora = ["kjv", "web", "jargon", "foldoc", "devil"];
const missing = corpora.filter((n) => !isInstalled(corpusEntry(n)));
if (missing.length) {
  console.error(
    `corpora not installed: ${missing.join(", ")}; run  retro corpus install ${missing.join(" ")}  (as root)`,
  );
  process.exit(3);
}
const work = path.resolve(a.work!),
  dbDir = path.join(work, "db-bm25");
const dbConfig = JSON.parse(fs.readFileSync(new URL("./configs/bundled-bm25.json", import.meta.url), "utf8"));
if (!a.report && (!fs.existsSync(path.join(dbDir, "manifest.json")) || !new Database(dbDir).manifest.neighbours?.valid))
  await buildDatabase(dbDir, dbConfig);
const chunk = dbConfig.chunkLength as number,
  seq = dbConfig.query.seq as number;
const size = { d: 128, heads: 4, layers: 4, seq, r: 2 * chunk };
const retro = { ...size, model: "retro", cca_layers: [2, 4], k: 2 };
const common = {
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
  "retro-fitting, BM25 neighbours": { model: retro },
  "retro-fitting, BM25 neighbours + retrieval lr x3": { model: retro, retrievalLr: 3 },
};
const setup = {
  work,
  out: path.resolve(a.out!),
  db: dbDir,
  size,
  common,
  variants: VARIANTS,
  only: a.only ? a.only.split(";") : null,
  preSteps: Number(a.pretrain),
  fitSteps: Number(a.fit),
  seeds: Number(a.seeds),
  describe: { dbConfig, retro },
};
const rows = a.report ? loadRows(setup.out) : await runFitting(setup);
console.log(report(setup, rows));
