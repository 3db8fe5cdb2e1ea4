/**
 * Parallel Bibles: train on the King James Version, put the World English Bible in the database as a
 * retrieval-only dataset, hold out KJV chapters. A held-out chapter's paraphrase (WEB) is retrievable, its
 * words were never trained on. Per seed: a GPT pretrained on KJV, then continued on identical tokens by
 * GPT-fitting and by Retro-fitting (each recipe); held-out loss with the controls of `retro eval ppl --controls`.
 * Needs `retro corpus install kjv web` (Debian's sword-text-kjv, sword-text-web).
 *
 *   node --import tsx experiments/parallel-bibles.ts [--seeds 3] [--pretrain 1500] [--fit 800] [--only name;name]
 *       [--work runs/bibles] [--out experiments/results/parallel-bibles.json] [--report]
 * --report prints the tables of the measured runs (for --fit) without training.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { buildDatabase } from "../src/db/build.ts";
import { Database } from "../src/db/database.ts";
import { train } from "../src/train/trainer.ts";
import { loadModel } from "../src/model/checkpoint.ts";
import { evalControls, type ControlReport } from "../src/train/controls.ts";
import { corpusDataset, corpusEntry, isInstalled } from "../src/data/catalogue.ts";

const { values: a } = parseArgs({ options: {
  seeds: { type: "string", default: "3" }, pretrain: { type: "string", default: "1500" }, fit: { type: "string", default: "800" },
  only: { type: "string" }, work: { type: "string", default: "runs/bibles" },
  out: { type: "string", default: "experiments/results/parallel-bibles.json" }, report: { type: "boolean", default: false },
} });
process.env.RETRO_QUIET ??= "1";
for (const n of ["kjv", "web"]) {
  if (!isInstalled(corpusEntry(n))) {
    console.error(`corpus "${n}" is not installed: retro corpus install kjv web  (apt-get install -y sword-text-kjv sword-text-web, as root)`);
    process.exit(3);
  }
}
const seeds = Number(a.seeds), preSteps = Number(a.pretrain), fitSteps = Number(a.fit);
const chunk = 16, seq = 128, work = path.resolve(a.work!);
// two databases over the same documents, tokenizer and split: dense (LSA + HNSW, the default) and BM25
const dbDir = path.join(work, "db"), bm25Dir = path.join(work, "db-bm25");
const dbConfig = {
  datasets: [corpusDataset("kjv", 1), corpusDataset("web", 0)],
  tokenizer: { kind: "bpe", vocabSize: 4096 }, chunkLength: chunk, validFraction: 0.05,
  query: { seq, candidates: 200, keep: 20, blockSize: 256 },
};
for (const [dir, over] of [[dbDir, {}], [bm25Dir, { index: { description: "BM25" } }]] as const) {
  if (!fs.existsSync(path.join(dir, "manifest.json")) || !new Database(dir).manifest.neighbours?.valid) await buildDatabase(dir, { ...dbConfig, ...over });
}
const size = { d: 128, heads: 4, layers: 4, seq, r: 2 * chunk };
const retro = { ...size, model: "retro", cca_layers: [2, 4], k: 2 };
const common = { db: dbDir, batch: 16, evalEvery: 1e9, saveEvery: 1e9, evalBatches: 0, threads: 2, lr: 1e-3, minLr: 1e-4, warmup: 50 };
const VARIANTS: Record<string, Record<string, unknown>> = {
  "gpt-fitting": {},
  "retro-fitting (default recipe)": { model: retro },
  "retro-fitting + retrieval lr x3": { model: retro, retrievalLr: 3 },
  "retro-fitting, BM25 neighbours": { model: retro, db: bm25Dir },
  "retro-fitting, BM25 neighbours + retrieval lr x3": { model: retro, db: bm25Dir, retrievalLr: 3 },
};
type Row = { name: string; seed: number; fitSteps: number; seconds: number; bm25Controls?: ControlReport } & ControlReport;
const only = a.only ? a.only.split(";") : null;
const saved = fs.existsSync(a.out!) ? JSON.parse(fs.readFileSync(a.out!, "utf8")) : {};
const results: Row[] = saved.results ?? [];
const stats = (xs: number[]) => {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd, n: xs.length };
};
function summary() {
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(VARIANTS)) {
    const rows = results.filter((r) => r.name === name && r.fitSteps === fitSteps);
    if (!rows.length) continue;
    const gpt = results.filter((r) => r.name === "gpt-fitting" && r.fitSteps === fitSteps);
    const s: Record<string, unknown> = { pplOwn: stats(rows.map((r) => r.ppl.own)), seeds: rows.map((r) => r.seed) };
    if (rows[0].model === "retro") {
      s.pplRandom = stats(rows.map((r) => r.ppl.random!));
      s.pplAnother = stats(rows.map((r) => r.ppl.another!));
      s.pplNone = stats(rows.map((r) => r.ppl.none!));
      // the gain over GPT-fitting of the same seed
      const paired = rows.map((r) => ({ r, g: gpt.find((g) => g.seed === r.seed) })).filter((p) => p.g);
      s.pplGainVsGptFitting = stats(paired.map((p) => 1 - p.r.ppl.own / p.g!.ppl.own));
      s.pplGainRandomVsGptFitting = stats(paired.map((p) => 1 - p.r.ppl.random! / p.g!.ppl.own));
    }
    out[name] = s;
  }
  return out;
}
const write = () => {
  if (a.report) return; // reporting never rewrites the results (another run may be writing them)
  fs.mkdirSync(path.dirname(a.out!), { recursive: true });
  fs.writeFileSync(a.out!, JSON.stringify({ setup: { dbConfig, size, retro, common, preSteps, fitSteps }, summary: summary(), results }, null, 1));
};
// --report: print the tables of what is measured, train nothing
for (let seed = 1; seed <= (a.report ? 0 : seeds); seed++) {
  const gpt = path.join(work, `gpt-seed${seed}-${preSteps}`);
  if (!fs.existsSync(path.join(gpt, "latest.json"))) {
    fs.rmSync(gpt, { recursive: true, force: true });
    const t0 = Date.now();
    await train(gpt, { ...common, model: { ...size, model: "gpt" }, steps: preSteps, seed });
    console.log(`seed ${seed}: GPT pretrained ${preSteps} steps in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  for (const [name, v] of Object.entries(VARIANTS)) {
    // --only: variant names, exact (or, for a string that names no variant, every variant containing it)
    if (only && !only.some((o) => (o in VARIANTS ? o === name : name.includes(o)))) continue;
    if (results.some((r) => r.name === name && r.seed === seed && r.fitSteps === fitSteps)) continue;
    const out = path.join(work, `${name.replace(/[^a-z0-9]+/gi, "-")}-seed${seed}-${fitSteps}`);
    fs.rmSync(out, { recursive: true, force: true });
    const t0 = Date.now();
    // the same seed for every continuation of one GPT: identical tokens in identical order
    await train(out, { ...common, init: gpt, steps: fitSteps, seed: 100 + seed, ...v });
    const { model } = loadModel(out);
    const db = new Database((v.db as string | undefined) ?? dbDir);
    const c = evalControls(model, db, { batch: 16, seed });
    db.close();
    const rec: Row = { name, seed, fitSteps, seconds: (Date.now() - t0) / 1000, ...c };
    if (!model.isRetro) {
      // the same GPT bucketed (and given in context) the BM25 database's neighbours
      const bdb = new Database(bm25Dir);
      rec.bm25Controls = evalControls(model, bdb, { batch: 16, seed });
      bdb.close();
    }
    results.push(rec);
    console.log(`seed ${seed} ${name}: ppl own ${c.ppl.own.toFixed(2)}${c.ppl.random ? `, random ${c.ppl.random.toFixed(2)}, another ${c.ppl.another!.toFixed(2)}, none ${c.ppl.none!.toFixed(2)}` : ""} (${rec.seconds.toFixed(0)} s)`);
    write();
  }
}
// rows measured before the in-context baseline and the BM25 controls existed: evaluate their checkpoints again
for (const r of results) {
  if (a.report || r.name !== "gpt-fitting" || (r.inContext && r.bm25Controls)) continue;
  const { model } = loadModel(path.join(work, `${r.name.replace(/[^a-z0-9]+/gi, "-")}-seed${r.seed}-${r.fitSteps}`));
  for (const [dir, key] of [[dbDir, "own"], [bm25Dir, "bm25"]] as const) {
    const db = new Database(dir);
    const c = evalControls(model, db, { batch: 16, seed: r.seed });
    db.close();
    if (key === "own") r.inContext = c.inContext;
    else r.bm25Controls = c;
  }
  write();
}
write();
// a markdown table of the measured rows (mean ± sd over the seeds present), as the README quotes it
const fmt = (xs: number[], d = 2) => {
  const st = stats(xs);
  return st.n > 1 ? `${st.mean.toFixed(d)} ± ${st.sd.toFixed(d)}` : st.mean.toFixed(d);
};
console.log("| run | seeds | held-out ppl | random neighbours | another sample's | none (gate 0) | vs GPT-fitting | loss, chunks overlapping ≤ 12.5 % / > 50 % |");
console.log("|---|---|---|---|---|---|---|---|");
for (const name of Object.keys(VARIANTS)) {
  const rows = results.filter((r) => r.name === name && r.fitSteps === fitSteps);
  if (!rows.length) continue;
  const gpt = results.filter((r) => r.name === "gpt-fitting" && r.fitSteps === fitSteps);
  const paired = rows.map((r) => [r, gpt.find((g) => g.seed === r.seed)] as const).filter((p) => p[1]);
  const hi = (r: Row) => {
    const all = r.overlap[3], half = r.overlap[2];
    return (all.loss * all.tokens - half.loss * half.tokens) / (all.tokens - half.tokens);
  };
  const retro = rows[0].model === "retro";
  console.log(`| ${name} | ${rows.map((r) => r.seed).join(",")} | ${fmt(rows.map((r) => r.ppl.own))} | ${retro ? fmt(rows.map((r) => r.ppl.random!)) : "–"} | ${retro ? fmt(rows.map((r) => r.ppl.another!)) : "–"} | ${retro ? fmt(rows.map((r) => r.ppl.none!)) : "–"} | ${retro ? `${fmt(paired.map(([r, g]) => 100 * (1 - r.ppl.own / g!.ppl.own)), 1)} %` : "–"} | ${fmt(rows.map((r) => r.overlap[0].loss), 3)} / ${fmt(rows.map(hi), 3)} |`);
}
const ic = results.filter((r) => r.name === "gpt-fitting" && r.fitSteps === fitSteps && r.inContext);
if (ic.length) console.log(`\nin-context baseline (GPT-fitting, LSA neighbours before the context): ${fmt(ic.map((r) => r.inContext!.with), 4)} with vs ${fmt(ic.map((r) => r.inContext!.without), 4)} without`);
const icb = results.filter((r) => r.name === "gpt-fitting" && r.fitSteps === fitSteps && r.bm25Controls?.inContext);
if (icb.length) console.log(`in-context baseline (BM25 neighbours): ${fmt(icb.map((r) => r.bm25Controls!.inContext!.with), 4)} with vs ${fmt(icb.map((r) => r.bm25Controls!.inContext!.without), 4)} without`);
