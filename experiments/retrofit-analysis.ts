/**
 * Does the Retro-fitted model use what it retrieves? For each model of experiments/retrofit.ts, held-out
 * perplexity per dataset, and for Retro three ways: its own neighbours (gate 1), the decoder alone (gate 0),
 * and real neighbours of another held-out sample (a control: if it equals gate 1, retrieval content is unused).
 * Also how much of each held-out chunk's continuation its neighbours contain (retrieval quality).
 *
 *   node --import tsx experiments/retrofit-analysis.ts [--db runs/default-db] [--out runs/retrofit]
 */
import * as path from "node:path";
import { Database } from "../src/db/database.ts";
import { Loader } from "../src/train/loader.ts";
import type { Model } from "../src/model/model.ts";
import { loadModel, resolveCheckpointDir } from "../src/model/checkpoint.ts";
import { writeJsonAtomic } from "../src/util/fsx.ts";

const argv = process.argv.slice(2);
const arg = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const dbDir = arg("--db", "runs/default-db"),
  out = arg("--out", "runs/retrofit");
process.env.RETRO_QUIET = "1";
const db = new Database(dbDir);
const names = (db.manifest.datasets ?? []).map((d) => d.name);
const reader = db.split("valid");

/** mean loss per dataset of the held-out items, one item per forward */
function perDataset(
  model: Model,
  opts: { gate?: number; shift?: number },
): Record<string, { loss: number; ppl: number; tokens: number }> {
  const c = model.config;
  const loader = new Loader(db, {
    split: "valid",
    seq: c.seq,
    batch: 1,
    seed: 0,
    retrieval: c.model === "retro" ? { k: c.k, r: c.r } : undefined,
    shiftNeighbours: opts.shift,
  });
  const keep = model.gate;
  if (opts.gate !== undefined) model.gate = opts.gate;
  const acc: Record<string, { sum: number; n: number }> = { all: { sum: 0, n: 0 } };
  for (let i = 0; i < loader.items; i++) {
    const b = loader.next();
    const r = model.forward(b);
    const ds = names[reader.docDataset(reader.docAt(loader.start(b.items[0])))] ?? "?";
    for (const k of [ds, "all"]) {
      acc[k] ??= { sum: 0, n: 0 };
      acc[k].sum += r.loss * r.tokens;
      acc[k].n += r.tokens;
    }
  }
  model.gate = keep;
  return Object.fromEntries(
    Object.entries(acc).map(([k, v]) => [k, { loss: v.sum / v.n, ppl: Math.exp(v.sum / v.n), tokens: v.n }]),
  );
}

/** share of a held-out chunk's NEXT chunk's word bigrams found in its k neighbours (chunk + continuation) */
function retrievalOverlap(k: number, r: number, shift?: number): number {
  const loader = new Loader(db, {
    split: "valid",
    seq: 256,
    batch: 1,
    seed: 0,
    retrieval: { k, r },
    shiftNeighbours: shift,
  });
  const words = (ids: ArrayLike<number>) =>
    db.tokenizer
      .decode(Uint32Array.from(ids))
      .toLowerCase()
      .match(/[a-z0-9']+/g) ?? [];
  const bigrams = (w: string[]) => new Set(w.slice(1).map((x, i) => `${w[i]} ${x}`));
  let hit = 0,
    total = 0;
  for (let i = 0; i < loader.items; i++) {
    const b = loader.next(),
      m = db.m,
      l = b.n / m;
    for (let j = 0; j + 1 < l; j++) {
      const next = bigrams(words(b.ids.subarray((j + 1) * m, (j + 2) * m)));
      const nb = new Set<string>();
      for (let q = 0; q < k; q++)
        for (const g of bigrams(words(b.neighbours!.subarray((j * k + q) * r, (j * k + q + 1) * r)))) nb.add(g);
      for (const g of next) {
        total++;
        if (nb.has(g)) hit++;
      }
    }
  }
  return hit / total;
}

const report: Record<string, unknown> = {};
for (const run of ["gpt-pretrain", "gpt-fitting", "retro-fitting", "retro-fitting-frozen"]) {
  let dir: string;
  try {
    dir = resolveCheckpointDir(path.join(out, run));
  } catch {
    continue;
  } // stage not run
  const model: Model = loadModel(dir).model;
  const cfg = model.config;
  const row: Record<string, unknown> = { own: perDataset(model, {}) };
  if (cfg.model === "retro") {
    row.gate0 = perDataset(model, { gate: 0 });
    row.otherSampleNeighbours = perDataset(model, { shift: 101 });
  }
  report[run] = row;
  for (const [mode, v] of Object.entries(row)) {
    const x = v as Record<string, { ppl: number; tokens: number }>;
    console.log(
      `${run.padEnd(21)} ${mode.padEnd(22)} ` +
        Object.entries(x)
          .map(([k, y]) => `${k} ${y.ppl.toFixed(2)}`)
          .join("  "),
    );
  }
}
const overlap = { own: retrievalOverlap(2, 128), otherSample: retrievalOverlap(2, 128, 101) };
console.log(
  `next-chunk word bigrams found in the 2 neighbours: own ${(100 * overlap.own).toFixed(2)} %, another sample's ` +
    `${(100 * overlap.otherSample).toFixed(2)} %`,
);
writeJsonAtomic(path.join(out, "analysis.json"), { ...report, overlap });
