/**
 * Does a Retro read its neighbours on its own training text? The loss of training batches with the model's own
 * neighbours, with the batch's neighbours in reverse order (another chunk's), and with the CCA gate at 0 (the
 * decoder alone). A model that reads is far below gate 0 with its own; one that does not is level.
 *
 *   node --import tsx experiments/neighbour-use.ts --ckpt RUN_OR_CHECKPOINT [--db DB] [--batches 4] [--seed 5]
 *
 * Prints one JSON line (nats per token) and exits 1 if the checkpoint is not a Retro.
 */
import { parseArgs } from "node:util";
import { Database } from "../src/db/database.ts";
import { Loader } from "../src/train/loader.ts";
import { checkpointDbDir, loadModel } from "../src/model/checkpoint.ts";

const { values: a } = parseArgs({
  options: {
    ckpt: { type: "string" },
    db: { type: "string" },
    batches: { type: "string", default: "4" },
    seed: { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
  },
});
if (!a.ckpt) throw new Error("--ckpt is required");
const { model } = loadModel(a.ckpt);
if (!model.isRetro) {
  console.error(`${a.ckpt} is a GPT: it reads no neighbours`);
  process.exit(1);
}
model.engine.setThreads(Number(a.threads));
const db = new Database(a.db ?? checkpointDbDir(a.ckpt));
const c = model.config;
const loader = new Loader(db, {
  split: "train",
  seq: c.seq,
  batch: 8,
  seed: Number(a.seed),
  retrieval: { k: c.k, r: c.r },
});
const sum = { own: 0, reversed: 0, gate0: 0 };
let tokens = 0;
for (let i = 0; i < Number(a.batches); i++) {
  const b = loader.next(8);
  const own = model.forward(b);
  const rev = model.forward({ ...b, neighbours: b.neighbours!.slice().reverse() });
  model.gate = 0;
  const g0 = model.forward(b);
  model.gate = 1;
  sum.own += own.loss * own.tokens;
  sum.reversed += rev.loss * rev.tokens;
  sum.gate0 += g0.loss * g0.tokens;
  tokens += own.tokens;
}
const r = { own: sum.own / tokens, reversed: sum.reversed / tokens, gate0: sum.gate0 / tokens };
console.log(JSON.stringify({ ckpt: a.ckpt, tokens, ...r, ownMinusGate0: r.own - r.gate0 }));
db.close();
