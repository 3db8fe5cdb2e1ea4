/**
 * The database build config: typed, validated (unknown keys and wrong types are refused with
 * their names), and written next to the outputs as `config.json`.
 */
import { RetroError } from "../util/errors.ts";
import { checkInt, checkNum, SEED_RANGE } from "../util/numbers.ts";
import { defaultDatasets, type DatasetSpec } from "../data/sources.ts";
import { checkIndexSettings } from "../search/registry.ts";
import type { IndexSettings } from "../search/types.ts";

/** bpe: `trainChars` caps the text the BPE is learned from (split evenly across datasets), bounding its memory */
export type TokenizerSpec = { kind: "gpt2" } | { kind: "bpe"; vocabSize: number; trainChars: number };
export type { EmbedderSpec } from "../embed/embedder.ts";
import type { EmbedderSpec } from "../embed/embedder.ts";
import { DEFAULT_SEED } from "../util/rng.ts";

/** `config.index`: the backend's description and its build/search settings (src/search/types.ts) */
export type IndexSpec = IndexSettings;

export interface QuerySpec {
  /** sample length in tokens (a multiple of the chunk length) */
  seq: number;
  /** candidates searched per chunk before the exclusion rule */
  candidates: number;
  /** neighbours kept per chunk (padded with -1) */
  keep: number;
  /** samples per neighbour block */
  blockSize: number;
}

export interface DbConfig {
  datasets: DatasetSpec[];
  tokenizer: TokenizerSpec;
  seed: number;
  validFraction: number;
  chunkLength: number;
  embedder: EmbedderSpec;
  embedBlockSize: number;
  index: IndexSpec;
  query: QuerySpec;
}

const DEFAULT_BPE = { kind: "bpe", vocabSize: 8192, trainChars: 100_000_000 } as const;

export function defaultConfig(): DbConfig {
  return {
    datasets: defaultDatasets(),
    tokenizer: { ...DEFAULT_BPE },
    seed: DEFAULT_SEED,
    validFraction: 0.01,
    chunkLength: 64,
    embedder: { kind: "lsa", dim: 256, fitSample: 50_000 },
    embedBlockSize: 8192,
    index: { description: "HNSW32,SQfp16", efConstruction: 128, efSearch: 256, threads: 2, addThreads: 1 },
    query: { seq: 512, candidates: 200, keep: 20, blockSize: 256 },
  };
}

type Shape = "number" | "string" | "boolean" | "object" | "array";
function check(
  obj: unknown,
  where: string,
  fields: Record<string, Shape>,
  required: string[] = [],
): Record<string, unknown> {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new RetroError("usage", `${where}: expected an object`);
  const o = obj as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(k in fields))
      throw new RetroError("usage", `${where}: unknown key "${k}" (known: ${Object.keys(fields).join(", ")})`);
    const want = fields[k];
    const got = Array.isArray(o[k]) ? "array" : typeof o[k];
    if (got !== want) throw new RetroError("usage", `${where}.${k}: expected ${want}, got ${got}`);
  }
  for (const k of required) if (!(k in o)) throw new RetroError("usage", `${where}: missing key "${k}"`);
  return o;
}

function positiveInt(v: number, where: string): void {
  checkInt(v, where, { min: 1 });
}

/**
 * A dataset of weight 0 is retrieval-only: all its documents go into the database (chunked, embedded, indexed)
 * and none is held out or drawn for training, so the database can be larger than the training set.
 */
export function isRetrievalOnly(ds: { weight?: number }): boolean {
  return ds.weight === 0;
}

/** Merge a user config (partial) over the defaults and validate the result. */
export function resolveConfig(user: unknown): DbConfig {
  const d = defaultConfig();
  const u = check(user ?? {}, "config", {
    datasets: "array",
    tokenizer: "object",
    seed: "number",
    validFraction: "number",
    chunkLength: "number",
    embedder: "object",
    embedBlockSize: "number",
    index: "object",
    query: "object",
  });
  const c: DbConfig = {
    ...d,
    ...(u as Partial<DbConfig>),
    index: { ...d.index, ...(u.index as object) },
    query: { ...d.query, ...(u.query as object) },
  };
  if (u.tokenizer) {
    const t = check(u.tokenizer, "config.tokenizer", { kind: "string", vocabSize: "number", trainChars: "number" }, [
      "kind",
    ]);
    if (t.kind === "gpt2") c.tokenizer = { kind: "gpt2" };
    else if (t.kind === "bpe")
      c.tokenizer = { ...DEFAULT_BPE, ...(t as { vocabSize?: number; trainChars?: number }), kind: "bpe" };
    else throw new RetroError("usage", `config.tokenizer.kind: "${String(t.kind)}" is not one of gpt2, bpe`);
  }
  if (u.embedder) {
    const e = check(
      u.embedder,
      "config.embedder",
      {
        kind: "string",
        dim: "number",
        fitSample: "number",
        model: "string",
        vocab: "string",
        maxLength: "number",
        batchSize: "number",
        lowercase: "boolean",
      },
      ["kind"],
    );
    if (e.kind === "lexical") c.embedder = { kind: "lexical", dim: (e.dim as number) ?? 256 };
    else if (e.kind === "lsa")
      c.embedder = { kind: "lsa", dim: (e.dim as number) ?? 256, fitSample: (e.fitSample as number) ?? 50_000 };
    else if (e.kind === "onnx") {
      if (typeof e.model !== "string" || typeof e.vocab !== "string")
        throw new RetroError("usage", `config.embedder: onnx needs "model" (model.onnx) and "vocab" (vocab.txt)`);
      c.embedder = {
        kind: "onnx",
        model: e.model,
        vocab: e.vocab,
        maxLength: (e.maxLength as number) ?? 256,
        batchSize: (e.batchSize as number) ?? 32,
        lowercase: (e.lowercase as boolean) ?? true,
      };
    } else throw new RetroError("usage", `config.embedder.kind: "${String(e.kind)}" is not one of lsa, lexical, onnx`);
  }
  check(c.index, "config.index", {
    description: "string",
    efConstruction: "number",
    efSearch: "number",
    threads: "number",
    addThreads: "number",
  });
  check(c.query, "config.query", { seq: "number", candidates: "number", keep: "number", blockSize: "number" });
  if (!Array.isArray(c.datasets) || c.datasets.length === 0)
    throw new RetroError("usage", "config.datasets: at least one dataset is needed");
  const names = new Set<string>();
  c.datasets.forEach((ds, i) => {
    check(
      ds,
      `config.datasets[${i}]`,
      {
        name: "string",
        source: "string",
        path: "string",
        field: "string",
        weight: "number",
        onBadLine: "string",
        validFraction: "number",
      },
      ["name", "source", "path"],
    );
    if (names.has(ds.name)) throw new RetroError("usage", `config.datasets: duplicate name "${ds.name}"`);
    names.add(ds.name);
    if (ds.weight !== undefined && !(ds.weight >= 0 && Number.isFinite(ds.weight)))
      throw new RetroError(
        "usage",
        `config.datasets[${i}].weight must be a number ≥ 0 (0 = retrieval-only), got ${ds.weight}`,
      );
    if (ds.validFraction !== undefined) {
      checkNum(ds.validFraction, `config.datasets[${i}].validFraction`, { min: 0, max: 1 });
      if (isRetrievalOnly(ds) && ds.validFraction > 0)
        throw new RetroError(
          "usage",
          `config.datasets[${i}]: a retrieval-only dataset (weight 0) holds nothing out; validFraction must be 0 or ` +
            `absent`,
        );
    }
    if (ds.onBadLine !== undefined && ds.onBadLine !== "fail" && ds.onBadLine !== "skip")
      throw new RetroError("usage", `config.datasets[${i}].onBadLine must be "fail" or "skip"`);
  });
  if (c.datasets.every(isRetrievalOnly)) {
    throw new RetroError(
      "usage",
      `config.datasets: every dataset has weight 0 (retrieval-only); at least one needs a weight > 0 to train on`,
    );
  }
  checkIndexSettings(c.index);
  checkInt(c.seed, "config.seed", SEED_RANGE);
  if (c.tokenizer.kind === "bpe") {
    checkInt(c.tokenizer.vocabSize, "config.tokenizer.vocabSize (bpe)", { min: 258, max: 65535 });
    checkInt(c.tokenizer.trainChars, "config.tokenizer.trainChars", { min: 1 });
  }
  if (c.embedder.kind !== "onnx") {
    checkInt(c.embedder.dim, "config.embedder.dim", { min: 1, max: 65536 });
    if (c.embedder.kind === "lsa") checkInt(c.embedder.fitSample, "config.embedder.fitSample", { min: 1 });
  } else {
    checkInt(c.embedder.maxLength, "config.embedder.maxLength", { min: 1 });
    checkInt(c.embedder.batchSize, "config.embedder.batchSize", { min: 1 });
  }
  for (const k of ["efConstruction", "efSearch", "threads", "addThreads"] as const)
    if (c.index[k] !== undefined)
      checkInt(c.index[k], `config.index.${k}`, { min: 1, max: k.endsWith("hreads") ? 256 : 1 << 16 });
  positiveInt(c.chunkLength, "config.chunkLength");
  positiveInt(c.embedBlockSize, "config.embedBlockSize");
  positiveInt(c.query.seq, "config.query.seq");
  positiveInt(c.query.candidates, "config.query.candidates");
  positiveInt(c.query.keep, "config.query.keep");
  positiveInt(c.query.blockSize, "config.query.blockSize");
  if (c.query.seq % c.chunkLength !== 0)
    throw new RetroError(
      "usage",
      `config.query.seq (${c.query.seq}) must be a multiple of chunkLength (${c.chunkLength})`,
    );
  if (c.query.keep > c.query.candidates)
    throw new RetroError("usage", `config.query.keep (${c.query.keep}) exceeds candidates (${c.query.candidates})`);
  // a database needs held-out documents: training evaluates on them, `eval ppl` measures them
  checkNum(c.validFraction, "config.validFraction", { above: 0, below: 1 });
  return c;
}

/** The keys whose values differ between two configs (for "refused: config changed" messages). */
export function diffKeys(a: unknown, b: unknown, prefix = ""): string[] {
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null)
    return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || "(root)"];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const out: string[] = [];
  for (const k of keys)
    out.push(
      ...diffKeys((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k),
    );
  return out;
}
