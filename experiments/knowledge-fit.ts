/**
 * Result (a) of `retro demo` for any runs over a demo's database: held-out perplexity on B's other biographies
 * and the loss on their fact tokens apart, with the neighbour controls for a Retro (another sample's, random,
 * gate 0). For runs the demo does not make — a Retro pretrained from scratch on A with its neighbours beside
 * the GPT pretrained on the same tokens, a Retro-fit started from an earlier GPT checkpoint.
 *
 *   node --import tsx experiments/knowledge-fit.ts --dir DEMO --run NAME=CKPT [--run …] [--out F.json]
 *
 * Prints one line per run and writes the figures as JSON when --out is given.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { Database } from "../src/db/database.ts";
import { loadModel } from "../src/model/checkpoint.ts";
import { evalControls } from "../src/train/controls.ts";
import { heldOutFactMask } from "../src/demo/facts.ts";
import { KNOWLEDGE } from "../src/demo/knowledge.ts";
import { makePeopleCorpus, type PeopleOptions } from "../src/data/people.ts";
import { readJson } from "../src/util/fsx.ts";

const { values: a } = parseArgs({
  options: {
    dir: { type: "string" },
    run: { type: "string", multiple: true },
    out: { type: "string" },
    threads: { type: "string", default: "2" },
  },
});
if (!a.dir || !a.run?.length) throw new Error("--dir DEMO and at least one --run NAME=CKPT are required");
const options = readJson<{ options: PeopleOptions }>(
  path.join(a.dir, "data", "people", "people.json"),
  "the demo's corpus record",
).options;
const corpus = makePeopleCorpus(options);
const db = new Database(path.join(a.dir, "db"));
const facts = heldOutFactMask(db, KNOWLEDGE.bHeldOut, corpus.docs.bHeldOut);
const results: Record<string, unknown> = {};
for (const spec of a.run) {
  const [name, ckpt] = spec.includes("=") ? spec.split("=", 2) : [spec, spec];
  const { model } = loadModel(path.resolve(a.dir, ckpt));
  model.engine.setThreads(Number(a.threads));
  const c = evalControls(model, db, { batch: 8, masks: { facts: facts.mask } });
  const f = c.masked!.facts;
  const row = {
    ckpt,
    retro: model.isRetro,
    ppl: c.ppl,
    factLoss: { own: f.own.loss, another: f.another, random: f.random, none: f.none },
    factTokens: facts.tokens,
  };
  results[name] = row;
  console.log(JSON.stringify({ name, ...row }));
}
if (a.out) fs.writeFileSync(a.out, `${JSON.stringify(results, null, 2)}\n`);
db.close();
