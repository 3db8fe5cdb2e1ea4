/**
 * The database build config: typed, validated (unknown keys and wrong types are refused with
 * their names), and written next to the outputs as `config.json`.
 */
import { RetroError } from "../util/errors.ts";
import { SEED_RANGE } from "../util/numbers.ts";
import { defaultDatasets, type DatasetSpec } from "../data/sources.ts";
import { DATASET_SETTINGS, REQUIRED_DATASET_KEYS } from "../data/document.ts";
import { checkIndexSettings } from "../search/registry.ts";
import type { IndexSettings } from "../search/types.ts";

/** bpe: `trainChars` caps the text the BPE is learned from (split evenly across datasets), bounding its memory */
export type TokenizerSpec = { kind: "gpt2" } | { kind: "bpe"; vocabSize: number; trainChars: number };
export type { EmbedderSpec } from "../embed/embedder.ts";
import { EMBEDDER_SETTINGS, type EmbedderKind, type EmbedderSpec } from "../embed/embedder.ts";
import { INDEX_SETTINGS } from "../search/settings.ts";
import { BPE_SETTINGS } from "../tokenizer/bpe.ts";
import {
  defaultsOf,
  defineSettings,
  unknownKeys,
  validateSettings,
  type SettingsTable,
  type SettingValues,
} from "../util/settings.ts";
import { DEFAULT_SEED } from "../util/rng.ts";

/** `config.index`: the backend's description and its build/search settings (src/search/types.ts) */
export type IndexSpec = IndexSettings;

/** `config.query`: the neighbour precompute (Megatron's query step) */
export const QUERY_SETTINGS = defineSettings({
  seq: { kind: "int", min: 1, default: 512, help: "sample length in tokens (a multiple of the chunk length)" },
  candidates: { kind: "int", min: 1, default: 200, help: "candidates searched per chunk before the exclusion rule" },
  keep: { kind: "int", min: 1, default: 20, help: "neighbours kept per chunk (padded with −1)" },
  blockSize: { kind: "int", min: 1, default: 256, help: "samples per neighbour block (the unit of resume)" },
});
export type QuerySpec = SettingValues<typeof QUERY_SETTINGS>;

/** the scalar keys of a database config */
export const DB_SETTINGS = defineSettings({
  seed: { kind: "int", ...SEED_RANGE, default: DEFAULT_SEED, help: "seed (held-out split, embedder fitting sample)" },
  validFraction: { kind: "num", above: 0, below: 1, default: 0.01, help: "share of each dataset's documents held out" },
  chunkLength: { kind: "int", min: 1, default: 64, help: "retrieval chunk length m in tokens" },
  embedBlockSize: { kind: "int", min: 1, default: 8192, help: "chunks per embedding block (the unit of resume)" },
});

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

const DEFAULT_BPE = { kind: "bpe", ...defaultsOf(BPE_SETTINGS) } as const;

export function defaultConfig(): DbConfig {
  return {
    datasets: defaultDatasets(),
    tokenizer: { ...DEFAULT_BPE },
    seed: DB_SETTINGS.seed.default,
    validFraction: DB_SETTINGS.validFraction.default,
    chunkLength: DB_SETTINGS.chunkLength.default,
    embedder: { kind: "lsa", ...defaultsOf(EMBEDDER_SETTINGS.lsa) },
    embedBlockSize: DB_SETTINGS.embedBlockSize.default,
    index: defaultsOf(INDEX_SETTINGS),
    query: defaultsOf(QUERY_SETTINGS),
  };
}

type Shape = "number" | "string" | "boolean" | "object" | "array";

/** the JSON shape of each key of a settings table (the structure check before the values are) */
function shapeOf(table: SettingsTable): Record<string, Shape> {
  const js = {
    int: "number",
    num: "number",
    bool: "boolean",
    text: "string",
    choice: "string",
    intList: "array",
  } as const;
  return Object.fromEntries(Object.entries(table).map(([k, v]) => [k, js[v.kind]]));
}
function check(
  obj: unknown,
  where: string,
  fields: Record<string, Shape>,
  required: string[] = [],
  open = false,
): Record<string, unknown> {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new RetroError("usage", `${where}: expected an object`);
  const o = obj as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (open && !(k in fields)) continue;
    if (!(k in fields))
      throw new RetroError("usage", `${where}: unknown key "${k}" (known: ${Object.keys(fields).join(", ")})`);
    const want = fields[k];
    const got = Array.isArray(o[k]) ? "array" : typeof o[k];
    if (got !== want) throw new RetroError("usage", `${where}.${k}: expected ${want}, got ${got}`);
  }
  for (const k of required) if (!(k in o)) throw new RetroError("usage", `${where}: missing key "${k}"`);
  return o;
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
    const t = check(u.tokenizer, "config.tokenizer", { kind: "string", ...shapeOf(BPE_SETTINGS) }, ["kind"]);
    if (t.kind === "gpt2") c.tokenizer = { kind: "gpt2" };
    else if (t.kind === "bpe")
      c.tokenizer = { ...DEFAULT_BPE, ...(t as { vocabSize?: number; trainChars?: number }), kind: "bpe" };
    else throw new RetroError("usage", `config.tokenizer.kind: "${String(t.kind)}" is not one of gpt2, bpe`);
  }
  if (u.embedder) {
    const e = check(u.embedder, "config.embedder", { kind: "string" }, ["kind"], true);
    const kind = e.kind as string;
    if (!Object.hasOwn(EMBEDDER_SETTINGS, kind))
      throw new RetroError(
        "usage",
        `config.embedder.kind: "${kind}" is not one of ${Object.keys(EMBEDDER_SETTINGS).join(", ")}`,
      );
    const table = EMBEDDER_SETTINGS[kind as EmbedderKind];
    const unknown = unknownKeys(e, [table], ["kind"]);
    if (unknown.length)
      throw new RetroError(
        "usage",
        `config.embedder: unknown key "${unknown[0]}" for ${kind} (known: kind, ${Object.keys(table).join(", ")})`,
      );
    c.embedder = { kind, ...defaultsOf(table), ...e } as EmbedderSpec;
  }
  check(c.index, "config.index", shapeOf(INDEX_SETTINGS));
  check(c.query, "config.query", shapeOf(QUERY_SETTINGS));
  if (!Array.isArray(c.datasets) || c.datasets.length === 0)
    throw new RetroError("usage", "config.datasets: at least one dataset is needed");
  const names = new Set<string>();
  c.datasets.forEach((ds, i) => {
    const where = `config.datasets[${i}]`;
    if (typeof ds !== "object" || ds === null || Array.isArray(ds))
      throw new RetroError("usage", `${where}: expected an object`);
    const unknown = unknownKeys(ds, [DATASET_SETTINGS]);
    if (unknown.length)
      throw new RetroError(
        "usage",
        `${where}: unknown key "${unknown[0]}" (known: ${Object.keys(DATASET_SETTINGS).join(", ")})`,
      );
    for (const k of REQUIRED_DATASET_KEYS)
      if (!(k in ds)) throw new RetroError("usage", `${where}: missing key "${k}"`);
    validateSettings(ds, DATASET_SETTINGS, (k) => `${where}.${k}`, { givenOnly: true });
    checkDatasetName(ds.name, `config.datasets[${i}].name`);
    if (names.has(ds.name)) throw new RetroError("usage", `config.datasets: duplicate name "${ds.name}"`);
    names.add(ds.name);
    if (isRetrievalOnly(ds) && ds.validFraction !== undefined && ds.validFraction > 0)
      throw new RetroError(
        "usage",
        `${where}: a retrieval-only dataset (weight 0) holds nothing out; validFraction must be 0 or absent`,
      );
  });
  if (c.datasets.every(isRetrievalOnly)) {
    throw new RetroError(
      "usage",
      `config.datasets: every dataset has weight 0 (retrieval-only); at least one needs a weight > 0 to train on`,
    );
  }
  checkIndexSettings(c.index);
  // a Megatron dataset holds GPT-2 token ids (what Megatron's GPT and Retro data are tokenized with)
  const mg = c.datasets.find((d) => d.source === "megatron");
  if (mg && c.tokenizer.kind !== "gpt2")
    throw new RetroError(
      "usage",
      `config.datasets: "${mg.name}" is a Megatron dataset of GPT-2 token ids: build with the gpt2 tokenizer ` +
        "(--tokenizer gpt2)",
    );
  validateSettings(c, DB_SETTINGS, (k) => `config.${k}`);
  if (c.tokenizer.kind === "bpe") validateSettings(c.tokenizer, BPE_SETTINGS, (k) => `config.tokenizer.${k} (bpe)`);
  validateSettings(c.embedder, EMBEDDER_SETTINGS[c.embedder.kind], (k) => `config.embedder.${k}`);
  if (c.embedder.kind === "onnx" && (!c.embedder.model || !c.embedder.vocab))
    throw new RetroError("usage", `config.embedder: onnx needs "model" (model.onnx) and "vocab" (vocab.txt)`);
  validateSettings(c.index, INDEX_SETTINGS, (k) => `config.index.${k}`);
  validateSettings(c.query, QUERY_SETTINGS, (k) => `config.query.${k}`);
  if (c.query.seq % c.chunkLength !== 0)
    throw new RetroError(
      "usage",
      `config.query.seq (${c.query.seq}) must be a multiple of chunkLength (${c.chunkLength})`,
    );
  if (c.query.keep > c.query.candidates)
    throw new RetroError("usage", `config.query.keep (${c.query.keep}) exceeds candidates (${c.query.candidates})`);
  // a database needs held-out documents (validFraction > 0): training evaluates on them, `eval ppl` measures them
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

/**
 * A dataset's name: it labels citations, `db stats` lines and prediction files, so it is one short word — letters,
 * digits, ".", "_", "-" (not first), at most 64 — never empty, a path or a line break.
 */
export function checkDatasetName(name: string, where: string): void {
  if (!/^[\p{L}\p{N}][\p{L}\p{N}._-]{0,63}$/u.test(name))
    throw new RetroError(
      "usage",
      `${where}: ${JSON.stringify(name)} is not a dataset name (1–64 letters, digits, ".", "_" or "-", starting ` +
        `with a letter or digit)`,
    );
}
