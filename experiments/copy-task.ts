/**
 * Does Retro-fitting learn to read its neighbours? The twin corpus (src/data/synthetic.ts): documents of random
 * pseudo-words, their exact twins in a retrieval-only dataset. A GPT is pretrained on the training documents,
 * then continued on identical tokens by GPT-fitting and by Retro-fitting under each recipe; held-out loss
 * (documents never trained on, whose twins are in the database) with the controls of `retro eval ppl`.
 * The unigram entropy, log(words), is the best a model that does not read its neighbours can do.
 *
 *   node --import tsx experiments/copy-task.ts [--steps 800] [--seeds 1] [--only name,name]
 *     [--out experiments/results/copy-task.json]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { writeTwinCorpus, twinDbConfig } from "../src/data/synthetic.ts";
import { buildDatabase } from "../src/db/build.ts";
import { Database } from "../src/db/database.ts";
import { train } from "../src/train/trainer.ts";
import { loadModel } from "../src/model/checkpoint.ts";
import { evalControls } from "../src/train/controls.ts";

const { values: a } = parseArgs({
  options: {
    steps: { type: "string", default: "800" },
    seeds: { type: "string", default: "1" },
    only: { type: "string" },
    out: { type: "string", default: "experiments/results/copy-task.json" },
    work: { type: "string", default: "runs/copy-task" },
    docs: { type: "string", default: "3000" },
    words: { type: "string", default: "200" },
  },
});
process.env.RETRO_QUIET ??= "1";
const steps = Number(a.steps),
  seeds = Number(a.seeds),
  words = Number(a.words);
const chunk = 16,
  seq = 64,
  work = path.resolve(a.work!);
const dbDir = path.join(work, "db");
if (!fs.existsSync(path.join(dbDir, "manifest.json")) || !new Database(dbDir).manifest.neighbours?.valid) {
  const files = writeTwinCorpus(path.join(work, "corpus"), { docs: Number(a.docs), docTokens: 64, words, seed: 1 });
  await buildDatabase(dbDir, twinDbConfig(files, { chunk, seq, words }));
}
const size = { d: 128, heads: 4, layers: 4, seq, r: 2 * chunk };
const retro = (rope: boolean) => ({ ...size, model: "retro", cca_layers: [2, 4], k: 2, retrieval_rope: rope });
const common = {
  db: dbDir,
  batch: 16,
  evalEvery: 1e9,
  saveEvery: 1e9,
  evalBatches: -1,
  threads: 2,
  steps,
  lr: 1e-3,
  minLr: 1e-4,
  warmup: 50,
};
const VARIANTS: Record<string, Record<string, unknown>> = {
  "gpt-fitting": {},
  "retro-fit, no rope (the model before retrieval_rope)": { model: retro(false) },
  "retro-fit + rope (default)": { model: retro(true) },
  "retro-fit + rope + zero CCA out": { model: retro(true), zeroCcaOut: true },
  "retro-fit + rope + retrieval lr x3": { model: retro(true), retrievalLr: 3 },
  "retro-fit + rope + decoder frozen 200 steps": { model: retro(true), freezeDecoderSteps: 200 },
};
const only = a.only ? a.only.split(",") : null;
const results: Record<string, unknown>[] = fs.existsSync(a.out!)
  ? (JSON.parse(fs.readFileSync(a.out!, "utf8")).results ?? [])
  : [];
for (let seed = 1; seed <= seeds; seed++) {
  const gpt = path.join(work, `gpt-seed${seed}`);
  if (!fs.existsSync(path.join(gpt, "latest.json"))) {
    fs.rmSync(gpt, { recursive: true, force: true });
    await train(gpt, { ...common, model: { ...size, model: "gpt" }, steps: 300, lr: 2e-3, minLr: 2e-4, seed });
  }
  for (const [name, v] of Object.entries(VARIANTS)) {
    if (only && !only.some((o) => name.includes(o))) continue;
    if (results.some((r) => r.name === name && r.seed === seed && r.steps === steps)) continue;
    const out = path.join(work, `${name.replace(/[^a-z0-9]+/gi, "-")}-seed${seed}-${steps}`);
    fs.rmSync(out, { recursive: true, force: true });
    const t0 = Date.now();
    await train(out, { ...common, init: gpt, seed: 100 + seed, ...v });
    const { model } = loadModel(out);
    const db = new Database(dbDir);
    const c = evalControls(model, db, { batch: 16, seed });
    db.close();
    const rec = { name, seed, steps, seconds: (Date.now() - t0) / 1000, unigramEntropy: Math.log(words), ...c };
    results.push(rec);
    console.log(JSON.stringify(rec));
    fs.mkdirSync(path.dirname(a.out!), { recursive: true });
    fs.writeFileSync(
      a.out!,
      JSON.stringify({ setup: { docs: Number(a.docs), words, chunk, seq, size, common }, results }, null, 1),
    );
  }
}
