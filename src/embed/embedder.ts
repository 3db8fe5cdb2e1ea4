/**
 * Chunk embedders behind one interface. Every embedder returns L2-normalised float32 rows, so that
 * inner product = cosine similarity in the index. `id` names the embedder and its fitted state:
 * an index built with one embedder refuses queries embedded by another.
 */
import { defineSettings, type SettingValues } from "../util/settings.ts";

/** Each embedder's settings (`config.embedder` besides its `kind`), declared once (src/util/settings.ts). */
export const EMBEDDER_SETTINGS = {
  lsa: defineSettings({
    dim: { kind: "int", min: 1, max: 65536, default: 256, help: "embedding dimension (truncated SVD rank)" },
    fitSample: {
      kind: "int",
      min: 1,
      default: 50_000,
      help: "chunks (a random sample) the LSA projection is fitted on",
    },
    minDf: {
      kind: "int",
      min: 0,
      default: 0,
      help:
        "words kept in the vocabulary: those in at least this many chunks of the fit sample; 0 scales it with the " +
        "corpus (1 under 2,000 sampled chunks, so a small corpus keeps every word; else 2)",
    },
  }),
  lexical: defineSettings({
    dim: { kind: "int", min: 1, max: 65536, default: 256, help: "feature-hashed TF-IDF buckets" },
  }),
  onnx: defineSettings({
    model: { kind: "text", default: "", help: "the BERT-family model.onnx (required)" },
    vocab: { kind: "text", default: "", help: "its vocab.txt or tokenizer.json (required)" },
    maxLength: { kind: "int", min: 1, default: 256, help: "tokens per chunk, [CLS] and [SEP] included" },
    batchSize: { kind: "int", min: 1, default: 32, help: "chunks per inference batch" },
    lowercase: { kind: "bool", default: true, help: "lowercase before WordPiece (uncased models)" },
  }),
} as const;

export type EmbedderKind = keyof typeof EMBEDDER_SETTINGS;

/** `config.embedder` of a database: which embedder and its settings */
export type EmbedderSpec = {
  [K in EmbedderKind]: { kind: K } & SettingValues<(typeof EMBEDDER_SETTINGS)[K]>;
}[EmbedderKind];

export interface Embedder {
  readonly id: string;
  readonly dim: number;
  /** Embed a batch of chunk texts: [texts.length, dim] row-major, rows L2-normalised. */
  embed(texts: string[]): Promise<Float32Array>;
}

export function l2normalizeRows(x: Float32Array, dim: number): void {
  for (let r = 0; r < x.length / dim; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[r * dim + j] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) x[r * dim + j] *= inv;
  }
}
