/** What a corpus is made of: documents, the dataset specs that name their source, and read statistics. */
export interface Document {
  /** stable id of the document inside its dataset (file path, line number, ...) */
  key: string;
  text: string;
}

export type SourceKind = "bundled" | "text" | "jsonl" | "sword" | "dictd" | "megatron";
export const BUNDLED = ["sotu", "moby-dick", "brown", "wordnet"] as const;
export type BundledName = (typeof BUNDLED)[number];

export interface DatasetSpec {
  /** dataset name, unique in a corpus (used in the chunk table and in reports) */
  name: string;
  source: SourceKind;
  /** file or folder (text, jsonl); the bundled dataset name (bundled); a SWORD module id, .conf or folder
   * (sword); a dictd database path without .index (dictd). `retro corpus list` names the installable ones. */
  path: string;
  /** JSONL field holding the text */
  field?: string;
  /** blend weight (relative share of training samples; used by the loader) */
  weight?: number;
  /** what to do with a malformed JSONL line */
  onBadLine?: "fail" | "skip";
  /** share of this dataset's documents held out (overrides the corpus's validFraction; 1 = all of them, a
   * held-out-only dataset: evaluation text that never enters the database) */
  validFraction?: number;
  /** a source of token ids (megatron): how to turn them into text (set by the build from its tokenizer) */
  detokenize?: (ids: Int32Array) => string;
}

export interface SourceStats {
  skippedLines: number;
}
