/**
 * Instruction tuning on the knowledge corpus, apart from the rest of the demo: build the tuning sets over a demo's
 * database (src/sft/knowledge.ts), tune one of its fitted checkpoints with the given settings, and answer B's
 * questions (held-out forms) with the top-2 retrieved passages and closed book — the demo's stages 4 and 5 for one
 * model, to compare tuning recipes in ~2 minutes each.
 *
 *   node --import tsx experiments/knowledge-tuning.ts --dir runs/demo --from gpt-fit --out /tmp/kt \
 *     [--steps 300] [--lr 1e-3] [--min-lr 1e-4] [--chat-weight 0.25] [--n 300] [--seed 1234]
 *
 * Prints one JSON line: the settings, the share of tuning questions whose passages hold the answer, EM/F1 both ways.
 * Exits 1 if a stage fails. (Use a database without group C: with C added, the tuning sets' "other" passages may
 * be about C people.)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { makePeopleCorpus, type PeopleOptions } from "../src/data/people.ts";
import { Database } from "../src/db/database.ts";
import { Retriever } from "../src/db/retriever.ts";
import { loadModel } from "../src/model/checkpoint.ts";
import { buildKnowledgeSets } from "../src/sft/knowledge.ts";
import { sft } from "../src/sft/sft.ts";
import { evalQa } from "../src/qa/evaluate.ts";
import { readQaFile } from "../src/prompt/qa-formats.ts";

const { values: a } = parseArgs({
  options: {
    dir: { type: "string", default: "runs/demo" },
    from: { type: "string", default: "gpt-fit" },
    out: { type: "string", default: "/tmp/knowledge-tuning" },
    steps: { type: "string", default: "300" },
    lr: { type: "string", default: "1e-3" },
    "min-lr": { type: "string" },
    "chat-weight": { type: "string", default: "0.25" },
    n: { type: "string", default: "300" },
    seed: { type: "string", default: "1234" },
    threads: { type: "string", default: "2" },
  },
});
const dir = path.resolve(a.dir!),
  out = path.resolve(a.out!);
const opts = (
  JSON.parse(fs.readFileSync(path.join(dir, "data", "people", "people.json"), "utf8")) as { options: PeopleOptions }
).options;
const corpus = makePeopleCorpus(opts);
const dbDir = path.join(dir, "db");
const db = new Database(dbDir);
const retriever = await Retriever.open(db);
const seq = db.config.query.seq;
const kdir = path.join(out, "data");
// a fresh folder each time (never deleted here: it may be someone's)
if (fs.existsSync(out) && fs.readdirSync(out).length) {
  console.error(`${out} is not empty: remove it or give another --out`);
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const counts = await buildKnowledgeSets(db, retriever, corpus, kdir, { seq, maxTokens: 16, topK: 2, system: null });
const lr = Number(a.lr);
await sft(path.join(out, "sft"), {
  init: path.join(dir, a.from!),
  db: dbDir,
  data: [
    { path: path.join(kdir, "train-qa.json"), weight: 1 },
    { path: path.join(kdir, "train-chat.jsonl"), weight: Number(a["chat-weight"]) },
  ],
  system: null,
  steps: Number(a.steps),
  batch: 8,
  lr,
  minLr: a["min-lr"] ? Number(a["min-lr"]) : lr / 10,
  evalEvery: 1000,
  evalBatches: 0,
  saveEvery: 1000,
  seed: Number(a.seed),
  threads: Number(a.threads),
});
const { model } = loadModel(path.join(out, "sft"));
model.engine.setThreads(Number(a.threads));
const items = readQaFile(path.join(kdir, "qa-b.jsonl")).items.slice(0, Number(a.n));
const result: Record<string, unknown> = {
  from: a.from,
  steps: Number(a.steps),
  lr,
  chatWeight: Number(a["chat-weight"]),
  trainPassagesHold: counts.recallTrain,
  recallB: counts.recallB,
};
for (const variant of ["rag", "none"] as const) {
  const q = await evalQa(model, db.tokenizer, retriever, items, {
    variant,
    passages: "retrieve",
    topK: 2,
    maxTokens: 16,
    system: null,
  });
  result[variant] = { em: q.exact_match, f1: q.f1 };
}
console.log(JSON.stringify(result));
db.close();
