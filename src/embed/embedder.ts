/**
 * Chunk embedders behind one interface. Every embedder returns L2-normalised float32 rows, so that
 * inner product = cosine similarity in the index. `id` names the embedder and its fitted state:
 * an index built with one embedder refuses queries embedded by another.
 */
/** `config.embedder` of a database: which embedder and its settings */
export type EmbedderSpec =
  | { kind: "lexical"; dim: number }
  | { kind: "lsa"; dim: number; fitSample: number }
  | { kind: "onnx"; model: string; vocab: string; maxLength: number; batchSize: number; lowercase: boolean };

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
