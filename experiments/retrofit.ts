/**
 * The paper's Fig. 2 / Fig. 3 on the bundled corpus: pretrain a small GPT, then continue it two (three) ways on
 * the same tokens — GPT-fitting (no retrieval), Retro-fitting with the decoder unfrozen, and (optionally) with
 * the decoder frozen — and compare held-out perplexity (documents never in the database).
 *
 *   node --import tsx experiments/retrofit.ts [--db runs/default-db] [--out runs/retrofit] [--pretrain 2000]
 *     [--fit 600] [--fit-lr 3e-4] [--no-frozen]
 *
 * Every stage is a `retro train` run folder under --out; an interrupted experiment re-run resumes each stage
 * where it stopped. Results: <out>/results.json and <out>/curves.{svg,png}.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase } from "../src/db/build.ts";
import { Database } from "../src/db/database.ts";
import { train } from "../src/train/trainer.ts";
import { evaluate, type EvalResult } from "../src/train/evaluate.ts";
import { plotRuns } from "../src/train/plot.ts";
import { loadModel, readCheckpointConfig, resolveCheckpointDir } from "../src/model/checkpoint.ts";
import { writeJsonAtomic, readJson } from "../src/util/fsx.ts";

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const dbDir = arg("--db", "runs/default-db");
const out = arg("--out", "runs/retrofit");
const preSteps = Number(arg("--pretrain", "2000"));
const fitSteps = Number(arg("--fit", "600"));
const withFrozen = !argv.includes("--no-frozen");
const fitLr = Number(arg("--fit-lr", "3e-4"));

const GPT = { model: "gpt", d: 256, heads: 4, layers: 4, seq: 256 };
// CCA in layers 2 and 4 of the 4-layer decoder (Megatron's rule would put one CCA in the last layer only)
const RETRO = { model: "retro", cca_layers: [2, 4], k: 2, r: 128 };
const common = { db: dbDir, batch: 8, evalBatches: 20, threads: 2 };

async function stage(name: string, input: Record<string, unknown>): Promise<string> {
  const dir = path.join(out, name);
  const steps = input.steps as number;
  const latest = path.join(dir, "latest.json");
  if (fs.existsSync(latest) && readJson<{ step: number }>(latest, "latest").step >= steps) {
    console.log(`${name}: done (${steps} steps)`);
    return dir;
  }
  const resume = fs.existsSync(path.join(dir, "config.json"));
  console.log(`${name}: ${resume ? "resuming" : "training"} (${steps} steps)`);
  const t0 = Date.now();
  const r = await train(dir, input, { resume });
  if (r.interrupted) process.exit(130);
  console.log(
    `${name}: ${((Date.now() - t0) / 60000).toFixed(1)} min, last loss ${r.lastLoss.toFixed(3)}, held-out ppl ` +
      `(${common.evalBatches} batches) ${r.lastEval?.ppl.toFixed(2)}`,
  );
  return dir;
}

function fullEval(dir: string, db: Database, gate?: number): EvalResult {
  return evaluate(loadModel(dir).model, db, { batch: 8, gate });
}

if (!fs.existsSync(path.join(dbDir, "manifest.json"))) {
  console.log(`building the default database in ${dbDir} (about 4 minutes)...`);
  await buildDatabase(dbDir, {});
}
fs.mkdirSync(out, { recursive: true });
const pre = await stage("gpt-pretrain", {
  ...common,
  model: GPT,
  steps: preSteps,
  lr: 1e-3,
  minLr: 1e-4,
  warmup: 100,
  evalEvery: 250,
  saveEvery: 250,
  seed: 1,
});
// both continuations: the same seed, hence the same tokens in the same order, and the same schedule
const fit = {
  ...common,
  init: pre,
  steps: fitSteps,
  lr: fitLr,
  minLr: fitLr / 10,
  warmup: 50,
  evalEvery: 100,
  saveEvery: 100,
  seed: 2,
};
const runs: Record<string, string> = { "gpt-pretrain": pre };
runs["gpt-fitting"] = await stage("gpt-fitting", fit);
runs["retro-fitting"] = await stage("retro-fitting", { ...fit, model: RETRO });
if (withFrozen)
  runs["retro-fitting-frozen"] = await stage("retro-fitting-frozen", { ...fit, model: RETRO, freezeDecoder: true });

const db = new Database(dbDir);
const results: Record<string, unknown>[] = [];
for (const [name, dir] of Object.entries(runs)) {
  const cfg = readCheckpointConfig(resolveCheckpointDir(dir));
  const e = fullEval(dir, db);
  const row: Record<string, unknown> = {
    run: name,
    model: cfg.model,
    steps: readJson<{ step: number }>(path.join(dir, "latest.json"), "latest").step,
    loss: e.loss,
    ppl: e.ppl,
    tokens: e.tokens,
  };
  if (cfg.model === "retro") {
    const g0 = fullEval(dir, db, 0);
    row.ppl_gate0 = g0.ppl;
  }
  results.push(row);
}
db.close();
writeJsonAtomic(path.join(out, "results.json"), {
  db: dbDir,
  pretrainSteps: preSteps,
  fitSteps,
  fitLr,
  gpt: GPT,
  retro: RETRO,
  results,
});
console.log("\nheld-out perplexity (every held-out token):");
for (const r of results) {
  console.log(
    `  ${String(r.run).padEnd(22)} ${String(r.model).padEnd(6)} steps ${String(r.steps).padStart(5)}  loss ` +
      `${(r.loss as number).toFixed(4)}  ppl ` +
      `${(r.ppl as number).toFixed(2)}${r.ppl_gate0 ? `  (gate 0: ${(r.ppl_gate0 as number).toFixed(2)})` : ""}  ` +
      `tokens ${r.tokens}`,
  );
}
const files = await plotRuns(
  Object.entries(runs)
    .filter(([n]) => n !== "gpt-pretrain")
    .map(([name, dir]) => ({ name, dir })),
  path.join(out, "curves.svg"),
  { title: "GPT-fitting vs Retro-fitting (bundled corpus)" },
);
console.log(files.join("\n"));
