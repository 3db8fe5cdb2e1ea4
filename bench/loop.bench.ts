/**
 * What the training loop costs on top of the engine: end-to-end tokens/s of `retro train` (loader, neighbour
 * tokens, forward/backward/AdamW, metrics line, progress bar) against the bare step of bench:train (one fixed
 * batch, no data), same config, same process, alternating rounds; prints the overhead.
 * Needs the default database: `npm run demo` first (or --db DIR).
 *
 *   npm run bench:loop [-- --db runs/default-db --steps 8 --rounds 2 --only gpt,retro]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Database } from "../src/db/database.ts";
import { resolveModelConfig } from "../src/model/config.ts";
import { Model } from "../src/model/model.ts";
import { AdamW } from "../src/model/optim.ts";
import { Loader } from "../src/train/loader.ts";
import { train } from "../src/train/trainer.ts";
import { readMetrics } from "../src/train/plot.ts";
import { tmpPathFor } from "../src/util/fsx.ts";
import { table } from "./common.ts";

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const dbDir = arg("--db", "runs/default-db");
const steps = Number(arg("--steps", "8")),
  rounds = Number(arg("--rounds", "2"));
if (!fs.existsSync(path.join(dbDir, "manifest.json"))) {
  console.log(`bench:loop needs a database: ${dbDir} not found (run \`npm run demo\` first, or pass --db DIR)`);
  process.exit(0);
}
process.env.RETRO_QUIET = "1";
const CONFIGS: Record<string, Record<string, unknown>> = {
  gpt: { model: "gpt", d: 256, heads: 4, layers: 4, seq: 256 },
  retro: { model: "retro", d: 256, heads: 4, layers: 6, seq: 256, k: 2, r: 128 },
};
const BATCH = 8;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function bare(model: Model, opt: AdamW, db: Database): number {
  const c = model.config;
  const batch = new Loader(db, {
    split: "train",
    seq: c.seq,
    batch: BATCH,
    seed: 1,
    retrieval: c.model === "retro" ? { k: c.k, r: c.r } : undefined,
  }).next();
  const times: number[] = [];
  for (let s = 0; s < steps + 1; s++) {
    const t0 = process.hrtime.bigint();
    model.zeroGrad();
    model.forward(batch);
    model.backward();
    opt.step(1e-4);
    if (s > 0) times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return (BATCH * c.seq) / median(times);
}

async function loop(name: string): Promise<number> {
  const out = tmpPathFor(path.join("runs", `bench-loop-${name}`));
  try {
    await train(out, {
      db: dbDir,
      model: CONFIGS[name],
      batch: BATCH,
      steps: steps + 1,
      evalEvery: 1e6,
      saveEvery: 1e6,
      warmup: 1,
    });
    const m = readMetrics(out).filter((x) => x.kind === "train") as ({ elapsed: number } & ReturnType<
      typeof readMetrics
    >[number])[];
    // wall time between consecutive metric lines: everything the loop does for one step
    const gaps = m.slice(1, -1).map((x, i) => m[i + 2].elapsed - x.elapsed);
    return (BATCH * (CONFIGS[name].seq as number)) / median(gaps);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

const db = new Database(dbDir);
const rows: Record<string, string | number>[] = [];
for (const name of arg("--only", "gpt,retro").split(",")) {
  const cfg = resolveModelConfig({ vocab: db.manifest.tokenizer!.vocabSize, chunk: db.m, ...CONFIGS[name] });
  const model = new Model(cfg, { seed: 1234 });
  const opt = new AdamW(model);
  const b: number[] = [],
    l: number[] = [];
  for (let r = 0; r < rounds; r++) {
    b.push(bare(model, opt, db));
    l.push(await loop(name));
  }
  const bb = Math.max(...b),
    ll = Math.max(...l);
  rows.push({
    config: name,
    "bare step tokens/s": bb.toFixed(0),
    "retro train tokens/s": ll.toFixed(0),
    "loop overhead": `${((100 * (bb - ll)) / bb).toFixed(1)} %`,
    "rounds (bare / loop)": `${b.map((x) => x.toFixed(0)).join(",")} / ${l.map((x) => x.toFixed(0)).join(",")}`,
  });
}
console.log(`database ${dbDir}, batch ${BATCH}, ${steps} timed steps per round, best of ${rounds} rounds`);
console.log(table(rows));
