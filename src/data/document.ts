/** What a corpus is made of: documents, the dataset specs that name their source, and read statistics. */
import { defineSettings } from "../util/settings.ts";

export interface Document {
  /** stable id of the document inside its dataset (file path, line number, ...) */
  key: string;
  text: string;
}

export const SOURCE_KINDS = ["bundled", "text", "jsonl", "sword", "dictd", "megatron"] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];
export const BUNDLED = ["sotu", "moby-dick", "brown", "wordnet"] as const;
export type BundledName = (typeof BUNDLED)[number];

export interface DatasetSpec {
  /** dataset name, unique in a corpus (used in the chunk table and in reports) */
  name: string;
  source: SourceKind;
  /**
   * file or folder (text, jsonl); the bundled dataset name (bundled); a SWORD module id, .conf or folder
   * (sword); a dictd database path without .index (dictd). `retro corpus list` names the installable ones.
   */
  path: string;
  /** JSONL field holding the text */
  field?: string;
  /** blend weight (relative share of training samples; used by the loader) */
  weight?: number;
  /** what to do with a malformed JSONL line */
  onBadLine?: "fail" | "skip";
  /**
   * share of this dataset's documents held out (overrides the corpus's validFraction; 1 = all of them, a
   * held-out-only dataset: evaluation text that never enters the database)
   */
  validFraction?: number;
  /** a source of token ids (megatron): how to turn them into text (set by the build from its tokenizer) */
  detokenize?: (ids: Int32Array) => string;
}

/**
 * The keys of one entry of a database config's `datasets` (the settings of `DatasetSpec` that a config or a flag
 * sets): name, source and path are required, the rest may be absent (`validFraction` absent: the database's).
 */
export const DATASET_SETTINGS = defineSettings({
  name: {
    kind: "text",
    default: "",
    defaultText: "required",
    help: "one short word, unique in the database: it labels citations, reports and prediction files",
  },
  source: { kind: "choice", choices: SOURCE_KINDS, default: "text", defaultText: "required", help: "what reads it" },
  path: {
    kind: "text",
    default: "",
    defaultText: "required",
    help: "a file or folder (text, jsonl), a bundled name, a SWORD module, a dictd database or a Megatron prefix",
  },
  field: { kind: "text", default: "text", help: "JSONL: the field holding the text" },
  weight: {
    kind: "num",
    min: 0,
    default: 1,
    help: "blend weight (relative share of training samples); 0 = retrieval-only (in the database, never trained on)",
  },
  onBadLine: { kind: "choice", choices: ["fail", "skip"], default: "fail", help: "JSONL: what a malformed line does" },
  validFraction: {
    kind: "num",
    min: 0,
    max: 1,
    default: 0.01,
    defaultText: "the database's",
    help: "share of this dataset's documents held out (1: evaluation text only; 0 for a retrieval-only dataset)",
  },
});
/** the keys a dataset entry must have */
export const REQUIRED_DATASET_KEYS = ["name", "source", "path"] as const;

export interface SourceStats {
  skippedLines: number;
}
