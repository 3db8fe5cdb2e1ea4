/**
 * `retro sft` (step 4): instruction tuning of a GPT or a Retro checkpoint on a weighted blend of conversation
 * files, the loss on the last assistant turn only. It is `train`'s loop (runTask: same run folder, checkpoints,
 * resume, progress) with another batch source and evaluation. Retro is tuned with the CCA gate at 0 by default,
 * as InstructRetro does: the decoder alone trains, the encoder and CCA are frozen (not even weight-decayed)
 * and skipped; `gate ≠ 0` keeps them in the loop, with neighbours retrieved on the fly for every chunk.
 */
import * as fs from "node:fs";
import { RetroError } from "../util/errors.ts";
import { sha256File } from "../util/fsx.ts";
import { Retriever } from "../db/retriever.ts";
import type { Database } from "../db/database.ts";
import { checkpointDbDir, readCheckpointConfig, resolveCheckpointDir } from "../model/checkpoint.ts";
import { resolveTrainConfig, runTask, type RunTask, type TrainConfig, type TrainResult } from "../train/trainer.ts";
import { DEFAULT_SFT_TRAIN, resolveSftSettings, type SftSettings } from "./config.ts";
import { loadSftData, sftBatch, SftLoader, type SftBatchOptions } from "./loader.ts";

export interface SftInput extends Record<string, unknown> {
  init?: string;
  db?: string;
  data?: { path: string; weight: number }[];
  /** the system prompt; null for none; undefined = the paper's */
  system?: string | null;
  validFraction?: number;
  model?: Record<string, unknown>;
}

/** The run's task section, which this module wrote (resolveSftSettings) and the trainer keeps opaque. */
function sftSection(cfg: TrainConfig): SftSettings {
  if (!cfg.sft) throw new RetroError("badInput", "this run has no instruction-tuning section (sft) in its config.json");
  return cfg.sft as SftSettings;
}

function checkDataUnchanged(cfg: TrainConfig): void {
  for (const d of sftSection(cfg).data) {
    if (!fs.existsSync(d.path))
      throw new RetroError("notFound", `instruction data not found: ${d.path} (the run was started with it)`);
    if (sha256File(d.path) !== d.sha256)
      throw new RetroError(
        "mismatch",
        `${d.path} changed since the run started (SHA-256 differs); restore it or start a new --out`,
      );
  }
}

/**
 * A GPT's instruction batches are as long as their longest conversation rounded up to this many tokens (padding
 * is masked out of the loss, and causal attention keeps it from the tokens before it): the kernels run lengths
 * like 203 ~1.5× slower than 224 (60 steps of the demo's tuning: 29.6 s vs 19.0 s).
 */
const GPT_ROUND = 32;

/**
 * The run's data (read and tokenized) and batch options (with the Retriever when the gate is on), made once per
 * run for both the loop and its evaluation.
 */
const prepared = new WeakMap<TrainConfig, Promise<{ data: ReturnType<typeof loadSftData>; o: SftBatchOptions }>>();
function runData(
  cfg: TrainConfig,
  db: Database,
): Promise<{ data: ReturnType<typeof loadSftData>; o: SftBatchOptions }> {
  let p = prepared.get(cfg);
  if (!p) {
    p = (async () => {
      const c = cfg.model,
        retrieving = c.model === "retro" && c.gate !== 0;
      const o: SftBatchOptions = {
        seq: c.seq,
        batch: cfg.batch,
        chunk: c.model === "retro" ? c.chunk : GPT_ROUND,
        eod: db.tokenizer.eod,
        retrieval: retrieving ? { k: c.k, r: c.r, retriever: await Retriever.open(db) } : undefined,
      };
      return { data: loadSftData(sftSection(cfg), db.tokenizer, c.seq, cfg.seed), o };
    })();
    prepared.set(cfg, p);
  }
  return p;
}

const sftTask: RunTask = {
  name: "sft",
  resolve(input, db) {
    const { data, system, validFraction, ...rest } = input as SftInput;
    if (!rest.init) throw new RetroError("usage", "sft: --init CHECKPOINT is required (a GPT or Retro run to tune)");
    const base = readCheckpointConfig(resolveCheckpointDir(rest.init));
    const model = { ...(rest.model ?? {}) };
    if (model.model !== undefined && model.model !== base.model)
      throw new RetroError(
        "usage",
        `sft tunes the checkpoint's own model (${base.model}); --model ${String(model.model)} is not accepted`,
      );
    if (base.model === "retro" && model.gate === undefined) model.gate = 0; // InstructRetro: the decoder alone
    const sft = resolveSftSettings({ data: data ?? [], system, validFraction });
    return resolveTrainConfig({ ...rest, model, sft }, db, DEFAULT_SFT_TRAIN);
  },
  async source(cfg, db) {
    checkDataUnchanged(cfg);
    const { data, o } = await runData(cfg, db);
    return new SftLoader(data, o, cfg.seed);
  },
  evaluator(cfg, db, model) {
    return async () => {
      const { data, o } = await runData(cfg, db);
      const valid = data.valid;
      let sum = 0,
        tokens = 0;
      const batches = Math.ceil(valid.length / cfg.batch);
      const limit = cfg.evalBatches >= 0 ? Math.min(cfg.evalBatches, batches) : batches; // −1: all
      for (let i = 0; i < limit; i++) {
        const b = await sftBatch(valid.slice(i * cfg.batch, (i + 1) * cfg.batch), o);
        const r = model.forward(b);
        sum += r.loss * r.tokens;
        tokens += r.tokens;
      }
      const loss = tokens ? sum / tokens : NaN;
      return { loss, ppl: Math.exp(loss), tokens };
    };
  },
  prepare(cfg, model) {
    if (cfg.model.model === "retro" && cfg.model.gate === 0) model.frozen.add("retrieval");
  },
};

/** Instruction-tune `input.init` into the run folder `out` (resumable like `train`). */
export async function sft(
  out: string,
  input: SftInput,
  opts: { resume?: boolean; stopAfter?: number } = {},
): Promise<TrainResult> {
  const i: SftInput = { ...input };
  if (!i.db && i.init && !(opts.resume && fs.existsSync(`${out}/config.json`))) {
    i.db = checkpointDbDir(i.init);
  }
  if (opts.resume && fs.existsSync(`${out}/config.json`)) {
    // the data of a resumed run is its config's (checked against the recorded SHA-256)
    delete i.data;
    delete i.system;
    delete i.validFraction;
  }
  return runTask(sftTask, out, i, opts);
}
