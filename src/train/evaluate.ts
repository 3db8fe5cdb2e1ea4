/**
 * Perplexity on the held-out split (documents that never entered the database). Retro reads the validation
 * samples' neighbours, precomputed against the training database with Step 1's exclusion rule; `gate` 0
 * evaluates the decoder alone. Loss is the mean over every token evaluated; ppl = exp(loss).
 */
import type { Database } from "../db/database.ts";
import type { Model } from "../model/model.ts";
import { Loader, type LoaderOptions } from "./loader.ts";
import type { ModelConfig } from "../model/config.ts";
import { progress } from "../util/progress.ts";

export interface EvalResult {
  loss: number;
  ppl: number;
  tokens: number;
  batches: number;
  gate: number | null;
}

/** the held-out split in order, as `model` reads it */
export function validLoaderOptions(c: ModelConfig, batch: number): LoaderOptions {
  return {
    split: "valid",
    seq: c.seq,
    batch,
    seed: 0,
    retrieval: c.model === "retro" ? { k: c.k, r: c.r } : undefined,
  };
}

/** `loader`: a loader made with validLoaderOptions for this model, reused across evaluations (it is rewound) */
export function evaluate(
  model: Model,
  db: Database,
  o: { batch: number; batches?: number; gate?: number; showProgress?: boolean; loader?: Loader },
): EvalResult {
  const c = model.config;
  const loader = o.loader ?? new Loader(db, validLoaderOptions(c, o.batch));
  loader.pos = 0;
  const full = Math.floor(loader.items / o.batch),
    rest = loader.items % o.batch;
  // a limited evaluation (during training) uses whole batches only; a full one also covers the remainder
  const sizes: number[] =
    o.batches && o.batches > 0
      ? new Array(Math.min(o.batches, Math.max(1, full))).fill(o.batch)
      : [...new Array(full).fill(o.batch), ...(rest ? [rest] : [])];
  const keepGate = model.gate;
  if (o.gate !== undefined) model.gate = o.gate;
  let sum = 0,
    tokens = 0;
  const bar = o.showProgress ? progress("eval", sizes.length, "batches") : null;
  try {
    for (let i = 0; i < sizes.length; i++) {
      const b = loader.next(sizes[i]);
      const r = model.forward(b);
      sum += r.loss * r.tokens;
      tokens += r.tokens;
      bar?.update(i + 1);
    }
  } finally {
    model.gate = keepGate;
    bar?.stop();
  }
  const loss = sum / tokens;
  return {
    loss,
    ppl: Math.exp(loss),
    tokens,
    batches: sizes.length,
    gate: c.model === "retro" ? (o.gate ?? keepGate) : null,
  };
}
