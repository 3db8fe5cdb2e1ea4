/**
 * Model checkpoints: `model.safetensors` (every parameter under its PyTorch name, F32) with `config.json`
 * beside it. Loading checks names, shapes and dtypes and names every mismatch. Loading a GPT checkpoint into
 * a Retro model (retro-fitting) fills the decoder and leaves the encoder and CCA freshly initialised.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RetroError } from "../util/errors.ts";
import { readJson, resolveStored, writeJsonAtomic } from "../util/fsx.ts";
import {
  readSafetensors,
  readSafetensorsMetadata,
  tensorF32,
  writeSafetensors,
  type SafetensorsFile,
  type TensorOut,
} from "../engine/safetensors.ts";
import { resolveModelConfig, RUN_KEYS, type ModelConfig } from "./config.ts";
import { Model } from "./model.ts";
import type { Engine } from "../engine/native.ts";
import type { ParamGroup } from "./params.ts";
import { Database } from "../db/database.ts";
import { hfDir, hfTokenizerId, isHfRef, readHfConfig, readHfWeights } from "./hf.ts";
import { warn } from "../util/progress.ts";

export const WEIGHTS_FILE = "model.safetensors";
export const CONFIG_FILE = "config.json";

export function saveCheckpoint(dir: string, model: Model, metadata: Record<string, string> = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, TensorOut>();
  for (const p of model.store.params) tensors.set(p.name, { dtype: "F32", shape: p.shape, data: p.data });
  writeSafetensors(path.join(dir, WEIGHTS_FILE), tensors, {
    format: "retro-ts",
    config: JSON.stringify(model.config),
    ...metadata,
  });
  writeJsonAtomic(path.join(dir, CONFIG_FILE), model.config);
}

/**
 * The tokenizer id a checkpoint was trained with: its weights file's metadata (written since the check
 * existed), else the config.json of the run that holds it (run folder, or the folder above a checkpoint).
 * undefined when neither says (a peer's dump, a copied checkpoint).
 */
export function checkpointTokenizer(dirOrRun: string): string | undefined {
  if (isHfRef(dirOrRun)) return hfTokenizerId(hfDir(dirOrRun));
  const dir = resolveCheckpointDir(dirOrRun);
  // the header only: the weights are read once, by the load
  return tokenizerOf(dir, readSafetensorsMetadata(path.join(dir, WEIGHTS_FILE)));
}

function tokenizerOf(dir: string, metadata: Record<string, string>): string | undefined {
  return typeof metadata.tokenizer === "string" ? metadata.tokenizer : runConfigOf(dir).tokenizer;
}

/**
 * The run config (db, tokenizer) of a checkpoint folder: its run's config.json (the folder itself or up to two above).
 */
export function runConfigOf(ckptDir: string): {
  db?: string;
  tokenizer?: string;
  tuning?: { system: string | null };
  /** the config.json that said so */
  configFile?: string;
} {
  for (const d of [ckptDir, path.dirname(ckptDir), path.dirname(path.dirname(ckptDir))]) {
    const f = path.join(d, "config.json");
    if (!fs.existsSync(f)) continue;
    const c = readJson<Record<string, unknown>>(f, "run config");
    if (typeof c.db === "string" && typeof c.tokenizer === "string") {
      // an instruction-tuned run records its prompt settings (the system prompt it was tuned with)
      const sft = c.sft as { system?: unknown } | undefined;
      const tuning =
        sft && (typeof sft.system === "string" || sft.system === null) ? { system: sft.system } : undefined;
      // runs record their database relative to the run folder when they share a tree (see storedPath)
      return { db: resolveStored(d, c.db), tokenizer: c.tokenizer, ...(tuning ? { tuning } : {}), configFile: f };
    }
  }
  return {};
}

/**
 * The system prompt to ask a checkpoint with: `--system TEXT` / `--no-system` (`flag` a string or false) when
 * given, else the one its run was instruction-tuned with (null: tuned without one), else the paper's.
 */
export function systemPromptFor(ckptDir: string, flag: string | false | undefined, paper: string): string | null {
  if (flag === false) return null;
  if (typeof flag === "string") return flag;
  const tuning = runConfigOf(ckptDir).tuning;
  return tuning ? tuning.system : paper;
}

/** Refuse a checkpoint trained with another tokenizer than `tokenizerId` (the vocabulary size alone can agree). */
export function checkCheckpointTokenizer(dirOrRun: string, tokenizerId: string, where: string): void {
  assertSameTokenizer(checkpointTokenizer(dirOrRun), dirOrRun, tokenizerId, where);
}

/** `trained`: the checkpoint's tokenizer id (undefined: unknown, not checked) */
export function assertSameTokenizer(
  trained: string | undefined,
  ckpt: string,
  tokenizerId: string,
  where: string,
): void {
  if (trained === undefined)
    warn(
      `${ckpt} records no tokenizer id (a foreign or early checkpoint): not checked against ${where}'s ${tokenizerId}`,
    );
  else if (trained !== tokenizerId)
    throw new RetroError("mismatch", `${ckpt} was trained with tokenizer ${trained}, ${where} has ${tokenizerId}`);
}

/** The model config of a checkpoint directory (or of a safetensors file's metadata). */
export function readCheckpointConfig(dirOrFile: string): ModelConfig {
  if (isHfRef(dirOrFile)) return readHfConfig(hfDir(dirOrFile));
  const isDir = fs.existsSync(dirOrFile) && fs.statSync(dirOrFile).isDirectory();
  if (isDir) {
    const cfg = path.join(dirOrFile, CONFIG_FILE);
    if (!fs.existsSync(cfg))
      throw new RetroError("notFound", `${dirOrFile}: no ${CONFIG_FILE} (not a checkpoint directory)`);
    return resolveModelConfig(readJson<Record<string, unknown>>(cfg, "model config"));
  }
  const f = readSafetensors(dirOrFile);
  if (!f.metadata.config)
    throw new RetroError("usage", `${dirOrFile}: no config in the file's metadata; pass --config`);
  return resolveModelConfig(JSON.parse(f.metadata.config) as Record<string, unknown>, RUN_KEYS);
}

export interface LoadReport {
  loaded: string[];
  /** parameters of the model the file did not have, left as initialised (retro-fitting: encoder and CCA) */
  fresh: string[];
  /** tensors of the file the model does not use (e.g. grad.* in a peer dump) */
  ignored: string[];
}

/**
 * Copy a safetensors file's tensors into the model. Every parameter must be present with its exact shape and
 * dtype F32, except the groups listed in `allowMissing` (retro-fitting passes ["retrieval"]). File tensors the
 * model does not have are refused unless `ignoreExtra` matches them.
 */
export function loadWeights(
  model: Model,
  file: string | SafetensorsFile,
  opts: { allowMissing?: ParamGroup[]; ignoreExtra?: (name: string) => boolean } = {},
): LoadReport {
  const f = typeof file === "string" ? readSafetensors(file) : file;
  const report: LoadReport = { loaded: [], fresh: [], ignored: [] };
  const problems: string[] = [];
  for (const p of model.store.params) {
    const t = f.tensors.get(p.name);
    if (!t) {
      if (opts.allowMissing?.includes(p.group)) report.fresh.push(p.name);
      else problems.push(`missing ${p.name} [${p.shape}]`);
      continue;
    }
    if (t.dtype !== "F32") problems.push(`${p.name}: dtype ${t.dtype}, expected F32`);
    else if (t.shape.join(",") !== p.shape.join(","))
      problems.push(`${p.name}: shape [${t.shape}] in the file, [${p.shape}] in the model`);
  }
  for (const name of f.tensors.keys()) {
    if (model.store.byName.has(name)) continue;
    if (opts.ignoreExtra?.(name)) report.ignored.push(name);
    else problems.push(`unexpected tensor ${name} (not a parameter of this ${model.config.model} model)`);
  }
  if (problems.length) {
    const more = problems.length > 12 ? `\n  ... and ${problems.length - 12} more` : "";
    throw new RetroError(
      "mismatch",
      `${f.path} does not fit the model:\n  ${problems.slice(0, 12).join("\n  ")}${more}`,
    );
  }
  for (const p of model.store.params) {
    if (!f.tensors.has(p.name)) continue;
    const w = tensorF32(f, p.name);
    // a NaN or infinite weight makes every loss NaN (a perplexity of null, reported as if measured): refused
    for (let i = 0; i < w.length; i++)
      if (!Number.isFinite(w[i]))
        throw new RetroError("corrupt", `${f.path}: ${p.name}[${i}] is ${w[i]} (a weight must be finite)`);
    p.data.set(w);
    report.loaded.push(p.name);
  }
  return report;
}

/** A checkpoint folder from a run folder (its latest checkpoint) or a checkpoint folder itself. */
export function resolveCheckpointDir(p: string): string {
  if (isHfRef(p)) return `hf:${hfDir(p)}`; // a Hugging Face folder: read in place (model/hf.ts)
  if (!fs.existsSync(p)) throw new RetroError("notFound", `checkpoint not found: ${p}`);
  const latest = path.join(p, "latest.json");
  if (fs.existsSync(latest)) return path.join(p, readJson<{ dir: string }>(latest, "latest checkpoint").dir);
  if (fs.existsSync(path.join(p, WEIGHTS_FILE))) return p;
  throw new RetroError(
    "notFound",
    `${p} is neither a run folder (latest.json) nor a checkpoint folder (${WEIGHTS_FILE})`,
  );
}

/**
 * The model of a checkpoint (run folder or checkpoint folder), weights loaded; `dir` is the checkpoint folder,
 * `tokenizer` the id it was trained with (checkpointTokenizer's answer, from the file read once).
 */
export function loadModel(
  dirOrRun: string,
  opts: { engine?: Engine } = {},
): { model: Model; dir: string; tokenizer: string | undefined } {
  const dir = resolveCheckpointDir(dirOrRun);
  const model = new Model(readCheckpointConfig(dir), { engine: opts.engine });
  if (isHfRef(dir)) {
    loadWeights(model, readCheckpointWeights(dir));
    return { model, dir, tokenizer: hfTokenizerId(hfDir(dir)) };
  }
  const file = readSafetensors(path.join(dir, WEIGHTS_FILE));
  loadWeights(model, file);
  return { model, dir, tokenizer: tokenizerOf(dir, file.metadata) };
}

/** A checkpoint folder's weights (its model.safetensors), or a Hugging Face folder's under retro-ts names. */
export function readCheckpointWeights(dir: string): SafetensorsFile {
  if (isHfRef(dir)) {
    const d = hfDir(dir);
    return readHfWeights(d, readHfConfig(d));
  }
  return readSafetensors(path.join(dir, WEIGHTS_FILE));
}

/** The database a checkpoint's run was made with: `--db` when given, else the one its run config names. */
export function checkpointDbDir(ckpt: string, db?: string): string {
  if (db !== undefined) return db;
  if (isHfRef(ckpt)) throw new RetroError("usage", `${ckpt}: a Hugging Face folder names no database; pass --db`);
  const run = runConfigOf(resolveCheckpointDir(ckpt));
  if (!run.db)
    throw new RetroError("usage", `${ckpt}: no run config names a database; pass --db (its tokenizer is needed)`);
  if (!fs.existsSync(run.db))
    throw new RetroError(
      "notFound",
      `database not found: ${run.db} (named by ${run.configFile}); pass --db DIR with the database where it is now`,
    );
  return run.db;
}

export interface OpenCheckpoint {
  model: Model;
  /** the checkpoint folder */
  dir: string;
  /** what the run's config.json says (database, tokenizer, tuning) */
  run: ReturnType<typeof runConfigOf>;
  db: Database;
}

/**
 * Open a checkpoint (run or checkpoint folder) with its database — `o.db`, else the run's — and refuse the pair
 * when they were made with different tokenizers. The one way every command that reads a checkpoint starts.
 * `o.db` may be a database already open (several checkpoints against one database: `retro eval qa`); it is then
 * the caller's to close, else the returned one is.
 */
export function openCheckpoint(ckpt: string, o: { db?: string | Database; engine?: Engine } = {}): OpenCheckpoint {
  const { model, dir, tokenizer } = loadModel(ckpt, { engine: o.engine });
  const run = runConfigOf(dir);
  const shared = o.db instanceof Database ? o.db : null;
  const db = shared ?? new Database(checkpointDbDir(ckpt, o.db as string | undefined));
  try {
    assertSameTokenizer(tokenizer, ckpt, db.manifest.tokenizer!.id, `database ${db.dir}`);
    // a model may pad its vocabulary; one smaller than the tokenizer's would read embeddings it does not have
    if (model.config.vocab < db.tokenizer.vocabSize)
      throw new RetroError(
        "mismatch",
        `${ckpt} has a vocabulary of ${model.config.vocab}, the tokenizer of database ${db.dir} has ` +
          `${db.tokenizer.vocabSize}`,
      );
  } catch (e) {
    if (!shared) db.close();
    throw e;
  }
  return { model, dir, run, db };
}

/**
 * How many passages to put into a chat prompt by default: InstructRetro's use — an instruction-tuned model whose
 * decoder reads no neighbours (a GPT, or a Retro with its CCA gate at 0) gets the top 2 passages in its prompt;
 * any other model none. `retro serve` and `retro generate --chat`.
 */
export function defaultPassages(model: Model, run: ReturnType<typeof runConfigOf>): number {
  return run.tuning && (!model.isRetro || model.gate === 0) ? 2 : 0;
}
