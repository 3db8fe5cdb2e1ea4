/**
 * `retro train`: GPT or Retro from scratch, Retro-fitting a GPT checkpoint (decoder loaded, encoder and CCA
 * fresh, decoder frozen or not), GPT-fitting (continue a GPT checkpoint on the same tokens). The run machinery
 * here — `openRun` and the loop over a `BatchSource` — is shared with `retro sft` (src/sft/sft.ts): a `RunTask`
 * says what differs (config, batches, evaluation).
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
import { readJson, resolveStored, storedPath, tmpPathFor, writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";
import { log, progress } from "../util/progress.ts";
import { Database } from "../db/database.ts";
import { isHfRef } from "../model/hf.ts";
import { loadEngine } from "../engine/native.ts";
import { readSafetensors, tensorF32, writeSafetensors, type TensorOut } from "../engine/safetensors.ts";
import { NEW_RETRO, resolveModelConfig, type ModelConfig } from "../model/config.ts";
import { Model } from "../model/model.ts";
import { AdamW } from "../model/optim.ts";
import {
  checkCheckpointTokenizer,
  loadWeights,
  readCheckpointConfig,
  resolveCheckpointDir,
  saveCheckpoint,
  WEIGHTS_FILE,
  readCheckpointWeights,
  type LoadReport,
} from "../model/checkpoint.ts";
import { Loader, checkModelAgainstDb } from "./loader.ts";
import { evaluate, validLoaderOptions } from "./evaluate.ts";
import { blendWeights } from "./blend.ts";
import { DEFAULT_TRAIN, TRAIN_SETTINGS, type TrainSettings } from "./settings.ts";
import { defaultsOf, legacyOf, unknownKeys, validateSettings } from "../util/settings.ts";
import type { Batch } from "../model/model.ts";

/**
 * A run's config (its config.json): the settings of TRAIN_SETTINGS (settings.ts, declared there once) and the
 * structure around them.
 */
export interface TrainConfig extends TrainSettings {
  /** database folder (absolute) */
  db: string;
  /** its tokenizer id, checked again on resume and evaluation */
  tokenizer: string;
  model: ModelConfig;
  /** checkpoint (run folder or checkpoint folder) to start from; null = from scratch */
  init: string | null;
  /**
   * The task's own section (instruction tuning: its data and prompt settings, declared by src/sft/config.ts);
   * opaque here: written to config.json and compared on resume like every other key. Absent for pretraining.
   */
  sft?: object;
}

const STRUCT_KEYS = ["db", "model", "init", "tokenizer", "sft"] as const;

/** Linear warmup to `lr`, then cosine decay to `minLr` at the last step. */
export function lrAt(c: Pick<TrainConfig, "lr" | "minLr" | "warmup" | "steps">, step: number): number {
  if (c.warmup > 0 && step <= c.warmup) return (c.lr * step) / c.warmup;
  const span = Math.max(1, c.steps - c.warmup);
  const progress = Math.min(1, (step - c.warmup) / span);
  return c.minLr + 0.5 * (c.lr - c.minLr) * (1 + Math.cos(Math.PI * progress));
}

/**
 * Resolve a run config: unknown keys refused, every setting checked against its declaration (settings.ts); the
 * model config starts from the defaults, or from the init checkpoint's config (its decoder), with `input.model`
 * on top; vocab and chunk come from the database. `defaults`: the command's defaults (train's or sft's).
 */
export function resolveTrainConfig(
  input: Record<string, unknown>,
  db: Database,
  defaults: TrainSettings = DEFAULT_TRAIN,
): TrainConfig {
  const unknown = unknownKeys(input, [TRAIN_SETTINGS], STRUCT_KEYS);
  if (unknown.length) throw new RetroError("usage", `unknown train config key(s): ${unknown.join(", ")}`);
  const c = { ...defaultsOf(TRAIN_SETTINGS), ...defaults } as Record<string, unknown>;
  for (const [k, v] of Object.entries(input))
    if (v !== undefined && !(STRUCT_KEYS as readonly string[]).includes(k)) c[k] = v;
  if (input.tokenizer !== undefined && input.tokenizer !== db.manifest.tokenizer!.id) {
    throw new RetroError(
      "mismatch",
      `the config was made for tokenizer ${String(input.tokenizer)}, database ${db.dir} has ` +
        `${db.manifest.tokenizer!.id}`,
    );
  }
  validateSettings(c, TRAIN_SETTINGS, (k) => `train config: ${k}`);
  if ((c.minLr as number) > (c.lr as number)) throw new RetroError("usage", "train config: need minLr <= lr");
  const init = (input.init as string | null | undefined) ?? null;
  if (init) checkCheckpointTokenizer(init, db.manifest.tokenizer!.id, `database ${db.dir}`);
  const base: Record<string, unknown> = init ? { ...readCheckpointConfig(resolveCheckpointDir(init)) } : {};
  const over = (input.model ?? {}) as Record<string, unknown>;
  if (init && over.model === "retro" && base.model === "gpt") {
    delete base.cca_layers; // the model room's default placement (defaultCcaLayers)
    delete base.chunk; // a GPT reads no chunks (a Hugging Face GPT-2 has none): the database's chunk length
    delete base.retrieval_rope; // a GPT's "false" says nothing about retrieval: the recipe below applies
    delete base.retrieval_null_kv;
  }
  // a new Retro model takes the model room's recipe over the plain defaults; a Retro checkpoint keeps its own
  const recipe = base.model === "retro" ? {} : NEW_RETRO;
  const t = db.manifest.tokenizer!;
  const model = resolveModelConfig({ vocab: t.vocabSize, chunk: db.m, ...recipe, ...base, ...over });
  checkModelAgainstDb(model, db);
  // a name the database lacks, or a retrieval-only dataset for a Retro: refused before any work
  blendWeights(db.manifest.datasets, c.blend as string, model.model === "retro" ? { dbDir: db.dir } : undefined);
  const out = {
    ...(c as TrainSettings),
    db: path.resolve(db.dir),
    tokenizer: t.id,
    model,
    init: init ? (isHfRef(init) ? resolveCheckpointDir(init) : path.resolve(init)) : null,
  } as TrainConfig;
  if (input.sft !== undefined) out.sft = input.sft as object;
  return out;
}

export interface TrainState {
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
  const tensors = new Map<string, TensorOut>([
    ["m", { dtype: "F32", shape: [opt.m.length], data: opt.m }],
    ["v", { dtype: "F32", shape: [opt.v.length], data: opt.v }],
  ]);
  writeSafetensors(path.join(tmp, "optim.safetensors"), tensors, { t: String(opt.t) });
  writeJsonAtomic(path.join(tmp, "state.json"), state);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  const latest = path.join(out, "latest.json");
  writeJsonAtomic(latest, { step: state.step, dir: path.join("checkpoints", name) });
  // keep the newest two checkpoints (older ones, and checkpoints past a resumed step, go)
  const all = fs
    .readdirSync(path.join(out, "checkpoints"))
    .filter((d) => /^step-\d+$/.test(d))
    .sort();
  for (const d of all)
    if (d > name || all.indexOf(d) < all.indexOf(name) - 1)
      fs.rmSync(path.join(out, "checkpoints", d), { recursive: true, force: true });
}

function appendMetric(file: string, rec: Record<string, unknown>): void {
  fs.appendFileSync(file, JSON.stringify(rec) + "\n");
}

/** keep the metric lines up to `step` (a resumed run rewrites what came after its checkpoint) */
function truncateMetrics(file: string, step: number): void {
  if (!fs.existsSync(file)) return;
  const keep = fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => {
      if (!l.trim()) return false;
      try {
        return (JSON.parse(l) as { step: number }).step <= step;
      } catch {
        return false; // a line cut by a kill
      }
    });
  writeFileAtomic(file, keep.map((l) => l + "\n").join(""));
}

/** Where a run's micro-batches come from: pretraining's Loader, instruction tuning's SftLoader. */
export interface BatchSource {
  next(): Batch | Promise<Batch>;
  /** items consumed (saved with each checkpoint; `seek` returns to it on resume) */
  readonly pos: number;
  seek(pos: number): void;
  readonly epoch: number;
}

/** What differs between pretraining and instruction tuning: the config, the batches, the evaluation. */
export interface RunTask {
  /** progress-bar label and log name */
  name: string;
  resolve(input: Record<string, unknown>, db: Database): TrainConfig | Promise<TrainConfig>;
  source(cfg: TrainConfig, db: Database, model: Model): BatchSource | Promise<BatchSource>;
  /** evaluation during training (loss over the tokens it counts) */
  evaluator(cfg: TrainConfig, db: Database, model: Model): () => Promise<{ loss: number; ppl: number; tokens: number }>;
  /** settings of the model that the task imposes after loading (e.g. sft's gate, frozen groups) */
  prepare?(cfg: TrainConfig, model: Model): void;
}

/** An opened run: config resolved or read back, model and optimizer restored, the folder ready for metrics. */
export interface OpenRun {
  out: string;
  cfg: TrainConfig;
  db: Database;
  model: Model;
  opt: AdamW;
  state: TrainState;
  load: LoadReport | null;
  metrics: string;
  resumed: boolean;
}

const pretrain: RunTask = {
  name: "train",
  resolve: (input, db) => resolveTrainConfig(input, db),
  source(cfg, db) {
    return new Loader(db, {
      split: "train",
      seq: cfg.model.seq,
      batch: cfg.batch,
      seed: cfg.seed,
      blend: cfg.blend,
      retrieval: cfg.model.model === "retro" ? { k: cfg.model.k, r: cfg.model.r } : undefined,
    });
  },
  evaluator(cfg, db, model) {
    // opened at the first evaluation: a run with evalBatches 0 needs no valid split
    let validLoader: Loader | undefined;
    return async () =>
      evaluate(model, db, {
        batch: cfg.batch,
        batches: cfg.evalBatches < 0 ? undefined : cfg.evalBatches,
        loader: (validLoader ??= new Loader(db, validLoaderOptions(cfg.model, cfg.batch))),
      });
  },
};

export async function train(
  out: string,
  input: Record<string, unknown>,
  opts: { resume?: boolean; stopAfter?: number } = {},
): Promise<TrainResult> {
  return runTask(pretrain, out, input, opts);
}

/** Lock the run folder, open the run, loop until its last step (or a stop), close. Shared by `train` and `sft`. */
export async function runTask(
  task: RunTask,
  out: string,
  input: Record<string, unknown>,
  opts: { resume?: boolean; stopAfter?: number } = {},
): Promise<TrainResult> {
  const cfgFile = path.join(out, "config.json");
  // a resumed run may name its database again or take it from its config.json
  const recorded = opts.resume && fs.existsSync(cfgFile) ? readRunConfig(out).db : undefined;
  const dbDir = (input.db as string | undefined) ?? recorded;
  if (!dbDir) throw new RetroError("usage", `${task.name}: a database is required (--db DIR)`);
  if (input.db === undefined && !fs.existsSync(dbDir))
    throw new RetroError(
      "notFound",
      `database not found: ${dbDir} (named by ${cfgFile}); pass --db DIR to resume with the database where it is now`,
    );
  const unlock = lockFolder(out, `retro ${task.name}`);
  try {
    const run = await openRun(task, out, input, opts, dbDir);
    try {
      return await loop(task, run, opts);
    } finally {
      run.db.close();
    }
  } finally {
    unlock();
  }
}

/**
 * A run folder's config.json, its database and its `init` checkpoint resolved against the folder (runs record
 * them relative; an `hf:` reference as it is).
 */
export function readRunConfig(out: string): TrainConfig {
  const cfg = readJson<TrainConfig>(path.join(out, "config.json"), "run config");
  if (typeof cfg.db === "string") cfg.db = resolveStored(out, cfg.db);
  if (typeof cfg.init === "string" && !isHfRef(cfg.init)) cfg.init = resolveStored(out, cfg.init);
  return cfg;
}

/**
 * Write a run's config.json, its database and `init` checkpoint recorded relative to the run when they share a
 * tree: a folder of runs (a demo's gpt, gpt-fit, …) moves as one.
 */
function writeRunConfig(out: string, cfg: TrainConfig): void {
  const init = typeof cfg.init === "string" && !isHfRef(cfg.init) ? storedPath(out, cfg.init) : cfg.init;
  writeJsonAtomic(path.join(out, "config.json"), { ...cfg, db: storedPath(out, cfg.db), init });
}

export async function openRun(
  task: RunTask,
  out: string,
  input: Record<string, unknown>,
  opts: { resume?: boolean },
  dbDir: string,
): Promise<OpenRun> {
  const cfgFile = path.join(out, "config.json");
  let cfg: TrainConfig;
  let state: TrainState = { step: 0, pos: 0, tokens: 0, seconds: 0 };
  const db = new Database(dbDir);
  let resume = Boolean(opts.resume);
  let moved = false;
  if (resume && !fs.existsSync(cfgFile)) {
    log(`${out}: no run to resume, starting one`);
    resume = false;
  }
  if (resume) {
    cfg = { ...legacyOf(TRAIN_SETTINGS), ...readRunConfig(out) };
    // settings given again must equal the run's; the others come from its config.json. The database may have
    // moved (--db names it where it is now): its tokenizer is checked below, and config.json follows it
    if (path.resolve(dbDir) !== cfg.db) {
      log(`${out}: its database is now ${path.resolve(dbDir)} (was ${cfg.db})`);
      cfg.db = path.resolve(dbDir);
      moved = true;
    }
    const given: Record<string, unknown> = { ...input, db: path.resolve(dbDir) };
    if (given.init !== undefined && given.init !== null)
      given.init = isHfRef(given.init as string)
        ? resolveCheckpointDir(given.init as string)
        : path.resolve(given.init as string);
    const diff: string[] = [];
    for (const [k, v] of Object.entries(given)) {
      if (v === undefined) continue;
      if (k === "model" || k === "sft") {
        const have = ((cfg as unknown as Record<string, unknown>)[k] ?? {}) as Record<string, unknown>;
        for (const [mk, mv] of Object.entries(v as Record<string, unknown>))
          if (mv !== undefined && JSON.stringify(mv) !== JSON.stringify(have[mk])) diff.push(`${k}.${mk}`);
      } else if (JSON.stringify(v) !== JSON.stringify((cfg as unknown as Record<string, unknown>)[k])) diff.push(k);
    }
    if (diff.length)
      throw new RetroError(
        "usage",
        `cannot resume ${out}: the config differs in ${diff.join(", ")} (resume with the original settings, or ` +
          `start a new --out)`,
      );
  } else {
    if (fs.existsSync(cfgFile) && fs.existsSync(path.join(out, "latest.json")))
      throw new RetroError("usage", `${out} already holds a run; pass --resume to continue it or choose another --out`);
    cfg = await task.resolve(input, db);
    // a config.json without any checkpoint is a start that failed (or was killed before its first save):
    // nothing would be lost by starting again, so the same command can simply be re-run
    if (fs.existsSync(cfgFile)) log(`${out}: no checkpoint was ever saved there; starting the run afresh`);
  }
  if (db.manifest.tokenizer!.id !== cfg.tokenizer)
    throw new RetroError(
      "mismatch",
      `database ${db.dir} now has tokenizer ${db.manifest.tokenizer!.id}, the run was made with ${cfg.tokenizer}`,
    );

  const engine = loadEngine();
  const model = new Model(cfg.model, { engine, seed: cfg.seed });
  const opt = new AdamW(model, {
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    eps: cfg.eps,
    weightDecay: cfg.weightDecay,
    clip: cfg.clip,
  });
  if (cfg.freezeDecoder || cfg.freezeDecoderSteps > 0) {
    if (cfg.model.model !== "retro")
      throw new RetroError("usage", "freezeDecoder: only a Retro model has a part left to train");
    model.frozen.add("decoder");
  }
  if (cfg.retrievalLr !== 1) opt.lrScale.set("retrieval", cfg.retrievalLr);
  task.prepare?.(cfg, model);
  let load: LoadReport | null = null;
  if (!resume && !cfg.init && cfg.zeroCcaOut && cfg.model.model === "retro") zeroCcaOut(model);
  const latest = path.join(out, "latest.json");
  if (resume && fs.existsSync(latest)) {
    const dir = resolveCheckpointDir(out);
    loadWeights(model, path.join(dir, WEIGHTS_FILE));
    const o = readSafetensors(path.join(dir, "optim.safetensors"));
    opt.m.set(tensorF32(o, "m"));
    opt.v.set(tensorF32(o, "v"));
    opt.t = Number(o.metadata.t);
    if (!Number.isSafeInteger(opt.t) || opt.t < 0)
      throw new RetroError(
        "corrupt",
        `${dir}/optim.safetensors: its metadata has no valid step count "t" (got ${JSON.stringify(o.metadata.t)})`,
      );
    state = checkState(readJson<TrainState>(path.join(dir, "state.json"), "train state"), dir, cfg, opt.t);
    const named = readJson<{ step?: unknown }>(latest, "latest checkpoint").step;
    if (named !== state.step)
      throw new RetroError(
        "corrupt",
        `${latest} names step ${JSON.stringify(named)}, its checkpoint is at ${state.step}`,
      );
    log(`resuming ${out} at step ${state.step}`);
  } else if (resume) log(`${out}: no checkpoint was saved yet; starting the run at step 0 with its config.json`);
  if (!(resume && fs.existsSync(latest)) && cfg.init) {
    const from = resolveCheckpointDir(cfg.init);
    const fromCfg = readCheckpointConfig(from);
    const retrofit = cfg.model.model === "retro" && fromCfg.model === "gpt";
    load = loadWeights(model, readCheckpointWeights(from), { allowMissing: retrofit ? ["retrieval"] : [] });
    if (retrofit && cfg.retrievalInit === "decoder") retrievalFromDecoder(model);
    if (retrofit && cfg.zeroCcaOut) zeroCcaOut(model);
    log(
      `${retrofit ? "retro-fitting" : "continuing"} from ${from}: ${load.loaded.length} tensors ` +
        `loaded${load.fresh.length ? `, ${load.fresh.length} initialised fresh (${summarise(load.fresh)})` : ""}`,
    );
  }
  fs.mkdirSync(out, { recursive: true });
  const ckpts = path.join(out, "checkpoints");
  if (fs.existsSync(ckpts))
    for (const d of fs.readdirSync(ckpts))
      if (d.endsWith(".tmp")) fs.rmSync(path.join(ckpts, d), { recursive: true, force: true });
  if (!resume || !fs.existsSync(cfgFile) || moved) writeRunConfig(out, cfg);
  const metrics = path.join(out, "metrics.jsonl");
  if (resume) truncateMetrics(metrics, state.step);
  else fs.rmSync(metrics, { force: true });
  return { out, cfg, db, model, opt, state, load, metrics, resumed: resume };
}

/**
 * A checkpoint's state.json, checked before a resume trusts it: the step is the one its folder, latest.json and
 * the optimizer's step count name, within the run's steps; the data position is the items those steps drew
 * (step × accum × batch); the counters are finite and not negative.
 */
function checkState(st: TrainState, dir: string, cfg: TrainConfig, optSteps: number): TrainState {
  const file = path.join(dir, "state.json");
  const bad = (why: string): never => {
    throw new RetroError("corrupt", `${file}: ${why}; resume from an intact checkpoint or start the run again`);
  };
  const nonNegInt = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  if (!nonNegInt(st.step)) bad(`"step" ${JSON.stringify(st.step)} is not a step number`);
  if (!nonNegInt(st.pos)) bad(`"pos" ${JSON.stringify(st.pos)} is not a data position`);
  for (const k of ["tokens", "seconds"] as const)
    if (typeof st[k] !== "number" || !Number.isFinite(st[k]) || st[k] < 0)
      bad(`"${k}" ${JSON.stringify(st[k])} is not a count`);
  const named = /^step-(\d+)$/.exec(path.basename(dir));
  if (named && Number(named[1]) !== st.step) bad(`step ${st.step} in a checkpoint folder of step ${Number(named[1])}`);
  if (st.step > cfg.steps) bad(`step ${st.step} is past the run's ${cfg.steps} steps`);
  if (optSteps !== st.step) bad(`step ${st.step}, but the optimizer state was saved after ${optSteps} steps`);
  if (st.pos !== st.step * cfg.accum * cfg.batch)
    bad(`"pos" ${st.pos} is not the ${st.step * cfg.accum * cfg.batch} items that ${st.step} steps draw`);
  return st;
}

/**
 * The training loop: each step takes `accum` micro-batches from the task's source, weights their gradients
 * by the tokens each counts (the step's gradient is that of the mean loss over all its counted tokens, so a
 * micro-batch of short answers weighs less than one of long answers), clips, updates, logs, evaluates and
 * checkpoints; Ctrl-C saves after the current step.
 */
async function loop(task: RunTask, run: OpenRun, opts: { stopAfter?: number }): Promise<TrainResult> {
  const { out, cfg, db, model, opt, metrics } = run;
  let state = run.state;
  const engine = model.engine;
  const source = await task.source(cfg, db, model);
  source.seek(state.pos);
  const evaluateNow = task.evaluator(cfg, db, model);

  let stop = false;
  // Ctrl-C or a scheduler's SIGTERM: save after this step and exit; a second signal quits at once (the last
  // checkpoint on disk is whole: checkpoints are written to a temp folder and renamed)
  const onSigint = (signal: NodeJS.Signals) => {
    if (stop) process.exit(signal === "SIGTERM" ? 143 : 130);
    stop = true;
    log(`\ninterrupted (${signal}): saving a checkpoint after this step (Ctrl-C again to quit now)`);
  };
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onSigint);
  const bar = progress(`${task.name} ${cfg.model.model}`, cfg.steps, "steps", state.step);
  bar.update(state.step);
  let lastLoss = NaN;
  let lastEval: { loss: number; ppl: number } | null = null;
  let saved = state.step; // the step of the newest checkpoint on disk
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
      const micro: Batch[] = [];
      for (let a = 0; a < cfg.accum; a++) micro.push(await source.next());
      const counted = micro.map((b) => countTokens(b));
      const total = counted.reduce((x, y) => x + y, 0);
      model.zeroGrad();
      let lossSum = 0;
      for (const b of micro) {
        const r = model.forward(b, { gradTokens: total });
        lossSum += r.loss * r.tokens;
        model.backward();
      }
      const { gradNorm } = opt.step(lr, 1);
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      const stepTokens = micro.reduce((x, b) => x + b.B * b.n, 0);
      state = { step, pos: source.pos, tokens: state.tokens + stepTokens, seconds: state.seconds + dt };
      lastLoss = total > 0 ? lossSum / total : 0;
      if (!Number.isFinite(lastLoss))
        throw new RetroError("badInput", `loss became ${lastLoss} at step ${step} (lower the learning rate?)`);
      appendMetric(metrics, {
        kind: "train",
        step,
        loss: lastLoss,
        lr,
        grad_norm: gradNorm,
        tokens_per_s: stepTokens / dt,
        tokens: state.tokens,
        loss_tokens: total,
        epoch: source.epoch,
        elapsed: Number(process.hrtime.bigint() - runStart) / 1e9,
      });
      if (cfg.evalBatches !== 0 && (step % cfg.evalEvery === 0 || step === cfg.steps)) {
        const e = await evaluateNow();
        lastEval = { loss: e.loss, ppl: e.ppl };
        appendMetric(metrics, { kind: "eval", step, loss: e.loss, ppl: e.ppl, tokens: e.tokens });
      }
      if (step % cfg.saveEvery === 0 || step === cfg.steps || stop || step === opts.stopAfter) {
        saveTrainCheckpoint(out, model, opt, state, cfg.tokenizer);
        saved = step;
      }
      bar.update(
        step,
        `loss ${lastLoss.toFixed(3)}${lastEval ? ` | val ppl ${lastEval.ppl.toFixed(1)}` : ""} | ` +
          `${(stepTokens / dt).toFixed(0)} tok/s`,
      );
      if (step === opts.stopAfter) break;
      await new Promise((r) => setImmediate(r)); // let a Ctrl-C in
    }
    // a Ctrl-C seen between steps (after the step's own save check): the steps done since the last save are kept
    if (stop && state.step > saved) saveTrainCheckpoint(out, model, opt, state, cfg.tokenizer);
  } finally {
    engine.setThreads(before.threads);
    engine.setPrecision(before.precision);
    bar.stop();
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
  }
  return { out, step: state.step, interrupted: stop, lastLoss, lastEval, load: run.load };
}

/** tokens a batch's loss counts (its mask's sum, or every token) */
export function countTokens(b: Batch): number {
  if (!b.mask) return b.B * b.n;
  let s = 0;
  for (let i = 0; i < b.mask.length; i++) s += b.mask[i];
  return s;
}

/**
 * A Retro-fit's retrieval weights copied from its decoder: encoder layer j takes decoder layer j's norms, attention
 * and MLP (the encoder embeds neighbours as the decoder embeds its input, wte + wpe, and attends both ways), its
 * conditioning on the chunk starts as nothing (output projection 0), and the CCA of layer l takes layer l's
 * self-attention and first norm. So CCA starts as the GPT's own way of reading its context, applied to the
 * neighbours, instead of at random.
 */
export function retrievalFromDecoder(model: Model): void {
  const c = model.config;
  // a layer's weight and bias, from one prefix to another
  const copy = (to: string, from: string) => {
    for (const t of ["weight", "bias"]) model.store.get(`${to}.${t}`).data.set(model.store.get(`${from}.${t}`).data);
  };
  const attn = (to: string, from: string) => {
    for (const w of ["q", "kv", "o"]) copy(`${to}.${w}`, `${from}.${w}`);
  };
  for (let j = 0; j < c.enc_layers; j++) {
    const from = `blocks.${Math.min(j, c.layers - 1)}`,
      to = `encoder.${j}`;
    for (const w of ["ln1", "ln2", "mlp.fc", "mlp.proj"]) copy(`${to}.${w}`, `${from}.${w}`);
    attn(`${to}.attn`, `${from}.attn`);
    if (j === 0) {
      model.store.get(`${to}.xattn.o.weight`).data.fill(0);
      model.store.get(`${to}.xattn.o.bias`).data.fill(0);
    }
  }
  for (const l of c.cca_layers) {
    copy(`blocks.${l - 1}.lnc`, `blocks.${l - 1}.ln1`);
    attn(`blocks.${l - 1}.xattn`, `blocks.${l - 1}.attn`);
  }
}

/** the decoder's CCA output projections (weights and biases) set to 0: CCA adds nothing until they learn */
export function zeroCcaOut(model: Model): void {
  for (const i of model.config.cca_layers) {
    model.store.get(`blocks.${i - 1}.xattn.o.weight`).data.fill(0);
    model.store.get(`blocks.${i - 1}.xattn.o.bias`).data.fill(0);
  }
}

function summarise(names: string[]): string {
  const groups = new Set(
    names.map((n) =>
      n
        .replace(/\.(weight|bias)$/, "")
        .replace(/\.\d+\./g, ".*.")
        .split(".")
        .slice(0, 3)
        .join("."),
    ),
  );
  return [...groups].slice(0, 4).join(", ") + (groups.size > 4 ? ", ..." : "");
}
