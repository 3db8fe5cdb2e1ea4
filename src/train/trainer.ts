/**
 * `retro train`: GPT or Retro from scratch, Retro-fitting a GPT checkpoint (decoder loaded, encoder and CCA
 * fresh, decoder frozen or not), GPT-fitting (continue a GPT checkpoint on the same tokens).
 *
 * A run folder holds `config.json` (the full resolved config), `metrics.jsonl` (one line per step and per
 * evaluation), `checkpoints/step-NNNNNN/` (weights, model config, optimizer state, loader position) and
 * `latest.json` naming the newest checkpoint. A checkpoint folder is written under a temp name and renamed,
 * then `latest.json` is replaced atomically, so a kill at any moment leaves the previous checkpoint usable.
 * `resume` continues from `latest.json`: the same loss curve and bit-identical final weights as a run never
 * interrupted (all kernels are deterministic for a given thread count, and the data order is a function of the
 * loader position). Ctrl-C saves a checkpoint after the current step, then exits.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RetroError } from "../util/errors.ts";
import { lockFolder } from "../util/lock.ts";
import { readJson, tmpPathFor, writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";
import { log, progress } from "../util/progress.ts";
import { Database } from "../db/database.ts";
import { loadEngine, type Precision } from "../engine/native.ts";
import { readSafetensors, tensorF32, writeSafetensors, type TensorOut } from "../engine/safetensors.ts";
import { resolveModelConfig, type ModelConfig } from "../model/config.ts";
import { Model } from "../model/model.ts";
import { AdamW } from "../model/optim.ts";
import { checkCheckpointTokenizer, loadWeights, readCheckpointConfig, resolveCheckpointDir, saveCheckpoint, WEIGHTS_FILE, type LoadReport } from "../model/checkpoint.ts";
import { Loader, checkModelAgainstDb } from "./loader.ts";
import { evaluate, validLoaderOptions } from "./evaluate.ts";

export interface TrainConfig {
  /** database folder (absolute) */
  db: string;
  /** its tokenizer id, checked again on resume and evaluation */
  tokenizer: string;
  model: ModelConfig;
  /** checkpoint (run folder or checkpoint folder) to start from; null = from scratch */
  init: string | null;
  freezeDecoder: boolean;
  /** Retro: the decoder is frozen for the first N steps, then trains too (0 = off; freezeDecoder = always) */
  freezeDecoderSteps: number;
  /** Retro: learning-rate multiplier of the retrieval part (encoder + CCA) */
  retrievalLr: number;
  /** Retro, fresh retrieval weights: CCA output projections start at 0, so a Retro-fit starts exactly at its GPT */
  zeroCcaOut: boolean;
  /** sequences per micro-batch */
  batch: number;
  /** micro-batches per optimizer step (gradient accumulation) */
  accum: number;
  steps: number;
  lr: number;
  minLr: number;
  warmup: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  clip: number;
  evalEvery: number;
  /** validation batches per evaluation during training (0 = the whole split) */
  evalBatches: number;
  saveEvery: number;
  seed: number;
  /** kernel threads (fixed per run: results are bit-identical only for the same thread count) */
  threads: number;
  /** matmul precision of the linear layers: fp32, or bf16 (fp32 accumulation and master weights) */
  precision: Precision;
}

/** Sized for the bundled corpus on 2 cores: a 5.3M-parameter GPT, ~0.4 s per step. */
export const DEFAULT_TRAIN: Omit<TrainConfig, "db" | "tokenizer" | "model" | "init"> = {
  freezeDecoder: false, freezeDecoderSteps: 0, retrievalLr: 1, zeroCcaOut: false, batch: 8, accum: 1, steps: 1000, lr: 1e-3, minLr: 1e-4, warmup: 100,
  beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0,
  evalEvery: 200, evalBatches: 20, saveEvery: 200, seed: 1234, threads: 2, precision: "fp32",
};

const TRAIN_KEYS = new Set([...Object.keys(DEFAULT_TRAIN), "db", "model", "init", "tokenizer"]);

/** what a run config written before a key existed meant by its absence */
const LEGACY_TRAIN: Partial<TrainConfig> = { freezeDecoderSteps: 0, retrievalLr: 1, zeroCcaOut: false };

/** Linear warmup to `lr`, then cosine decay to `minLr` at the last step. */
export function lrAt(c: Pick<TrainConfig, "lr" | "minLr" | "warmup" | "steps">, step: number): number {
  if (c.warmup > 0 && step <= c.warmup) return (c.lr * step) / c.warmup;
  const span = Math.max(1, c.steps - c.warmup);
  const progress = Math.min(1, (step - c.warmup) / span);
  return c.minLr + 0.5 * (c.lr - c.minLr) * (1 + Math.cos(Math.PI * progress));
}

/**
 * Resolve a run config: unknown keys refused; the model config starts from the defaults, or from the init
 * checkpoint's config (its decoder), with `input.model` on top; vocab and chunk come from the database.
 */
export function resolveTrainConfig(input: Record<string, unknown>, db: Database): TrainConfig {
  const unknown = Object.keys(input).filter((k) => !TRAIN_KEYS.has(k));
  if (unknown.length) throw new RetroError("usage", `unknown train config key(s): ${unknown.join(", ")}`);
  const c = { ...DEFAULT_TRAIN } as Record<string, unknown>;
  for (const [k, v] of Object.entries(input)) if (v !== undefined && k !== "model" && k !== "tokenizer" && k !== "db" && k !== "init") c[k] = v;
  if (input.tokenizer !== undefined && input.tokenizer !== db.manifest.tokenizer!.id) {
    throw new RetroError("mismatch", `the config was made for tokenizer ${String(input.tokenizer)}, database ${db.dir} has ${db.manifest.tokenizer!.id}`);
  }
  for (const k of Object.keys(DEFAULT_TRAIN)) {
    const want = typeof (DEFAULT_TRAIN as Record<string, unknown>)[k];
    if (typeof c[k] !== want) throw new RetroError("usage", `train config: ${k} must be a ${want}, got ${JSON.stringify(c[k])}`);
  }
  if (!Number.isInteger(c.freezeDecoderSteps) || (c.freezeDecoderSteps as number) < 0) throw new RetroError("usage", "train config: freezeDecoderSteps must be an integer ≥ 0");
  if (!((c.retrievalLr as number) > 0)) throw new RetroError("usage", "train config: retrievalLr must be > 0");
  for (const k of ["batch", "accum", "steps", "evalEvery", "saveEvery", "threads"]) {
    if (!Number.isInteger(c[k]) || (c[k] as number) <= 0) throw new RetroError("usage", `train config: ${k} must be a positive integer`);
  }
  if (c.precision !== "fp32" && c.precision !== "bf16") throw new RetroError("usage", `train config: precision must be "fp32" or "bf16"`);
  if (!((c.lr as number) > 0) || (c.minLr as number) < 0 || (c.minLr as number) > (c.lr as number)) throw new RetroError("usage", "train config: need 0 <= minLr <= lr and lr > 0");
  const init = (input.init as string | null | undefined) ?? null;
  if (init) checkCheckpointTokenizer(init, db.manifest.tokenizer!.id, `database ${db.dir}`);
  const base: Record<string, unknown> = init ? { ...readCheckpointConfig(resolveCheckpointDir(init)) } : {};
  const over = (input.model ?? {}) as Record<string, unknown>;
  if (init && over.model === "retro" && base.model === "gpt") {
    delete base.cca_layers; // Megatron's default placement
    delete base.retrieval_rope; // a GPT's "false" says nothing about retrieval: the recipe below applies
  }
  // new Retro models read their neighbours with rotary positions (experiments/copy-task.ts: without them a
  // Retro-fit does not learn to copy even an exact twin); a Retro checkpoint keeps what it was trained with
  const recipe = base.model === "retro" ? {} : { retrieval_rope: true };
  const t = db.manifest.tokenizer!;
  const model = resolveModelConfig({ vocab: t.vocabSize, chunk: db.m, ...recipe, ...base, ...over });
  checkModelAgainstDb(model, db);
  return { ...(c as typeof DEFAULT_TRAIN), db: path.resolve(db.dir), tokenizer: t.id, model, init: init ? path.resolve(init) : null };
}

interface TrainState {
  step: number;
  /** loader position (items consumed) */
  pos: number;
  tokens: number;
  seconds: number;
}

export interface TrainResult {
  out: string;
  step: number;
  interrupted: boolean;
  lastLoss: number;
  lastEval: { loss: number; ppl: number } | null;
  load: LoadReport | null;
}

function saveTrainCheckpoint(out: string, model: Model, opt: AdamW, state: TrainState, tokenizer: string): void {
  const name = `step-${String(state.step).padStart(6, "0")}`;
  const dir = path.join(out, "checkpoints", name);
  const tmp = tmpPathFor(dir);
  saveCheckpoint(tmp, model, { step: String(state.step), tokenizer });
  const tensors = new Map<string, TensorOut>([["m", { dtype: "F32", shape: [opt.m.length], data: opt.m }], ["v", { dtype: "F32", shape: [opt.v.length], data: opt.v }]]);
  writeSafetensors(path.join(tmp, "optim.safetensors"), tensors, { t: String(opt.t) });
  writeJsonAtomic(path.join(tmp, "state.json"), state);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  const latest = path.join(out, "latest.json");
  writeJsonAtomic(latest, { step: state.step, dir: path.join("checkpoints", name) });
  // keep the newest two checkpoints (older ones, and checkpoints past a resumed step, go)
  const all = fs.readdirSync(path.join(out, "checkpoints")).filter((d) => /^step-\d+$/.test(d)).sort();
  for (const d of all) if (d > name || all.indexOf(d) < all.indexOf(name) - 1) fs.rmSync(path.join(out, "checkpoints", d), { recursive: true, force: true });
}

function appendMetric(file: string, rec: Record<string, unknown>): void {
  fs.appendFileSync(file, JSON.stringify(rec) + "\n");
}

/** keep the metric lines up to `step` (a resumed run rewrites what came after its checkpoint) */
function truncateMetrics(file: string, step: number): void {
  if (!fs.existsSync(file)) return;
  const keep = fs.readFileSync(file, "utf8").split("\n").filter((l) => {
    if (!l.trim()) return false;
    try {
      return (JSON.parse(l) as { step: number }).step <= step;
    } catch {
      return false; // a line cut by a kill
    }
  });
  writeFileAtomic(file, keep.map((l) => l + "\n").join(""));
}

export async function train(out: string, input: Record<string, unknown>, opts: { resume?: boolean; stopAfter?: number } = {}): Promise<TrainResult> {
  const cfgFile = path.join(out, "config.json");
  // a resumed run may name its database again or take it from its config.json
  const dbDir = (input.db as string | undefined) ?? (opts.resume && fs.existsSync(cfgFile) ? readJson<TrainConfig>(cfgFile, "run config").db : undefined);
  if (!dbDir) throw new RetroError("usage", "train: a database is required (--db DIR)");
  const unlock = lockFolder(out, "retro train");
  try {
    return await trainLocked(out, input, opts, dbDir, cfgFile);
  } finally {
    unlock();
  }
}

async function trainLocked(out: string, input: Record<string, unknown>, opts: { resume?: boolean; stopAfter?: number }, dbDir: string, cfgFile: string): Promise<TrainResult> {
  let cfg: TrainConfig;
  let state: TrainState = { step: 0, pos: 0, tokens: 0, seconds: 0 };
  const db = new Database(dbDir);
  if (opts.resume && !fs.existsSync(cfgFile)) {
    log(`${out}: no run to resume, starting one`);
    opts = { ...opts, resume: false };
  }
  if (opts.resume) {
    cfg = { ...LEGACY_TRAIN, ...readJson<TrainConfig>(cfgFile, "run config") };
    // settings given again must equal the run's; the others come from its config.json
    const given: Record<string, unknown> = { ...input, db: path.resolve(dbDir) };
    if (given.init !== undefined && given.init !== null) given.init = path.resolve(given.init as string);
    const diff: string[] = [];
    for (const [k, v] of Object.entries(given)) {
      if (v === undefined) continue;
      if (k === "model") {
        for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) if (mv !== undefined && JSON.stringify(mv) !== JSON.stringify((cfg.model as unknown as Record<string, unknown>)[mk])) diff.push(`model.${mk}`);
      } else if (JSON.stringify(v) !== JSON.stringify((cfg as unknown as Record<string, unknown>)[k])) diff.push(k);
    }
    if (diff.length) throw new RetroError("usage", `cannot resume ${out}: the config differs in ${diff.join(", ")} (resume with the original settings, or start a new --out)`);
  } else {
    if (fs.existsSync(cfgFile)) throw new RetroError("usage", `${out} already holds a run; pass --resume to continue it or choose another --out`);
    cfg = resolveTrainConfig(input, db);
  }
  if (db.manifest.tokenizer!.id !== cfg.tokenizer) throw new RetroError("mismatch", `database ${db.dir} now has tokenizer ${db.manifest.tokenizer!.id}, the run was made with ${cfg.tokenizer}`);

  const engine = loadEngine();
  const model = new Model(cfg.model, { engine, seed: cfg.seed });
  const opt = new AdamW(model, { beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay, clip: cfg.clip });
  if (cfg.freezeDecoder || cfg.freezeDecoderSteps > 0) {
    if (cfg.model.model !== "retro") throw new RetroError("usage", "freezeDecoder: only a Retro model has a part left to train");
    model.frozen.add("decoder");
  }
  if (cfg.retrievalLr !== 1) opt.lrScale.set("retrieval", cfg.retrievalLr);
  let load: LoadReport | null = null;
  if (!opts.resume && !cfg.init && cfg.zeroCcaOut && cfg.model.model === "retro") zeroCcaOut(model);
  const latest = path.join(out, "latest.json");
  if (opts.resume && fs.existsSync(latest)) {
    const dir = resolveCheckpointDir(out);
    loadWeights(model, path.join(dir, WEIGHTS_FILE));
    const o = readSafetensors(path.join(dir, "optim.safetensors"));
    opt.m.set(tensorF32(o, "m"));
    opt.v.set(tensorF32(o, "v"));
    opt.t = Number(o.metadata.t);
    state = readJson<TrainState>(path.join(dir, "state.json"), "train state");
    log(`resuming ${out} at step ${state.step}`);
  } else if (cfg.init) {
    const from = resolveCheckpointDir(cfg.init);
    const fromCfg = readCheckpointConfig(from);
    const retrofit = cfg.model.model === "retro" && fromCfg.model === "gpt";
    load = loadWeights(model, path.join(from, WEIGHTS_FILE), { allowMissing: retrofit ? ["retrieval"] : [] });
    if (retrofit && cfg.zeroCcaOut) zeroCcaOut(model);
    log(`${retrofit ? "retro-fitting" : "continuing"} from ${from}: ${load.loaded.length} tensors loaded${load.fresh.length ? `, ${load.fresh.length} initialised fresh (${summarise(load.fresh)})` : ""}`);
  }
  fs.mkdirSync(out, { recursive: true });
  const ckpts = path.join(out, "checkpoints");
  if (fs.existsSync(ckpts)) for (const d of fs.readdirSync(ckpts)) if (d.endsWith(".tmp")) fs.rmSync(path.join(ckpts, d), { recursive: true, force: true });
  if (!opts.resume || !fs.existsSync(cfgFile)) writeJsonAtomic(cfgFile, cfg);
  const metrics = path.join(out, "metrics.jsonl");
  if (opts.resume) truncateMetrics(metrics, state.step);
  else fs.rmSync(metrics, { force: true });

  const loader = new Loader(db, { split: "train", seq: cfg.model.seq, batch: cfg.batch, seed: cfg.seed, retrieval: cfg.model.model === "retro" ? { k: cfg.model.k, r: cfg.model.r } : undefined });
  loader.seek(state.pos);
  const validLoader = new Loader(db, validLoaderOptions(cfg.model, cfg.batch));

  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    log("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit now)");
  };
  process.on("SIGINT", onSigint);
  const bar = progress(`train ${cfg.model.model}`, cfg.steps, "steps", state.step);
  bar.update(state.step);
  let lastLoss = NaN;
  let lastEval: { loss: number; ppl: number } | null = null;
  const tokensPerStep = cfg.batch * cfg.accum * cfg.model.seq;
  const runStart = process.hrtime.bigint();
  // the engine is shared by the process: this run's threads and precision hold until it ends
  const before = { threads: engine.getThreads(), precision: engine.getPrecision() };
  engine.setThreads(cfg.threads);
  engine.setPrecision(cfg.precision ?? "fp32");
  try {
    while (state.step < cfg.steps && !stop) {
      const t0 = process.hrtime.bigint();
      const step = state.step + 1;
      const lr = lrAt(cfg, step);
      if (cfg.freezeDecoderSteps > 0 && !cfg.freezeDecoder) {
        if (step <= cfg.freezeDecoderSteps) model.frozen.add("decoder");
        else model.frozen.delete("decoder");
      }
      model.zeroGrad();
      let lossSum = 0;
      for (let a = 0; a < cfg.accum; a++) {
        lossSum += model.forward(loader.next()).loss;
        model.backward();
      }
      const { gradNorm } = opt.step(lr, 1 / cfg.accum);
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      state = { step, pos: loader.pos, tokens: state.tokens + tokensPerStep, seconds: state.seconds + dt };
      lastLoss = lossSum / cfg.accum;
      if (!Number.isFinite(lastLoss)) throw new RetroError("badInput", `loss became ${lastLoss} at step ${step} (lower the learning rate?)`);
      appendMetric(metrics, { kind: "train", step, loss: lastLoss, lr, grad_norm: gradNorm, tokens_per_s: tokensPerStep / dt, tokens: state.tokens, epoch: loader.epoch, elapsed: Number(process.hrtime.bigint() - runStart) / 1e9 });
      if (step % cfg.evalEvery === 0 || step === cfg.steps) {
        const e = evaluate(model, db, { batch: cfg.batch, batches: cfg.evalBatches, loader: validLoader });
        lastEval = { loss: e.loss, ppl: e.ppl };
        appendMetric(metrics, { kind: "eval", step, loss: e.loss, ppl: e.ppl, tokens: e.tokens });
      }
      if (step % cfg.saveEvery === 0 || step === cfg.steps || stop || step === opts.stopAfter) saveTrainCheckpoint(out, model, opt, state, cfg.tokenizer);
      bar.update(step, `loss ${lastLoss.toFixed(3)}${lastEval ? ` | val ppl ${lastEval.ppl.toFixed(1)}` : ""} | ${(tokensPerStep / dt).toFixed(0)} tok/s`);
      if (step === opts.stopAfter) break;
      await new Promise((r) => setImmediate(r)); // let a Ctrl-C in
    }
  } finally {
    engine.setThreads(before.threads);
    engine.setPrecision(before.precision);
    bar.stop();
    process.off("SIGINT", onSigint);
    db.close();
  }
  return { out, step: state.step, interrupted: stop, lastLoss, lastEval, load };
}

/** the decoder's CCA output projections (weights and biases) set to 0: CCA adds nothing until they learn */
export function zeroCcaOut(model: Model): void {
  for (const i of model.config.cca_layers) {
    model.store.get(`blocks.${i - 1}.xattn.o.weight`).data.fill(0);
    model.store.get(`blocks.${i - 1}.xattn.o.bias`).data.fill(0);
  }
}

function summarise(names: string[]): string {
  const groups = new Set(names.map((n) => n.replace(/\.(weight|bias)$/, "").replace(/\.\d+\./g, ".*.").split(".").slice(0, 3).join(".")));
  return [...groups].slice(0, 4).join(", ") + (groups.size > 4 ? ", ..." : "");
}
