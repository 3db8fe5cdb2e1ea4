/**
 * The offline default embedder: TF-IDF over word unigrams and bigrams, projected to `dim`
 * dimensions by signed feature hashing (a sparse random projection, which preserves cosine
 * similarity in expectation). Needs no model files; its IDF table is fitted on a random sample
 * of the database's chunks and saved with the database.
 */
import { hash32 } from "../util/rng.ts";
import { sha256 } from "../util/fsx.ts";
import { l2normalizeRows, type Embedder } from "./embedder.ts";

export const IDF_BUCKETS = 1 << 18;
const WORD = /[\p{L}\p{N}]+/gu;

function features(text: string, ngrams: number): number[] {
  const words = text.toLowerCase().match(WORD) ?? [];
  const out: number[] = [];
  for (let i = 0; i < words.length; i++) {
    out.push(hash32(words[i]));
    if (ngrams > 1 && i + 1 < words.length) out.push(hash32(words[i] + " " + words[i + 1]));
  }
  return out;
}

/** Document frequencies over hashed features → IDF table (log((1 + N) / (1 + df)) + 1). */
export function fitIdf(texts: Iterable<string>, ngrams = 2): Float32Array {
  const df = new Uint32Array(IDF_BUCKETS);
  let n = 0;
  for (const t of texts) {
    n++;
    const seen = new Set<number>();
    for (const f of features(t, ngrams)) seen.add(f & (IDF_BUCKETS - 1));
    for (const b of seen) df[b]++;
  }
  const idf = new Float32Array(IDF_BUCKETS);
  for (let b = 0; b < IDF_BUCKETS; b++) idf[b] = Math.log((1 + n) / (1 + df[b])) + 1;
  return idf;
}

export class LexicalEmbedder implements Embedder {
  readonly id: string;
  constructor(
    readonly dim: number,
    private idf: Float32Array,
    readonly ngrams = 2,
  ) {
    if (idf.length !== IDF_BUCKETS)
      throw new Error(`lexical embedder: IDF table has ${idf.length} entries, expected ${IDF_BUCKETS}`);
    const hash = sha256(new Uint8Array(idf.buffer, idf.byteOffset, idf.byteLength)).slice(0, 12);
    this.id = `lexical${dim}${ngrams === 2 ? "" : `n${ngrams}`}-${hash}`;
  }

  embedOne(text: string, out: Float32Array, off: number): void {
    const tf = new Map<number, number>();
    for (const f of features(text, this.ngrams)) tf.set(f, (tf.get(f) ?? 0) + 1);
    for (const [f, c] of tf) {
      // bucket, output dimension and sign from independent bits of the 32-bit hash
      const w = (1 + Math.log(c)) * this.idf[f & (IDF_BUCKETS - 1)];
      const h = Math.imul(f ^ (f >>> 16), 0x45d9f3b) >>> 0;
      out[off + (h % this.dim)] += h & 0x80000000 ? -w : w;
    }
  }

  async embed(texts: string[]): Promise<Float32Array> {
    const out = new Float32Array(texts.length * this.dim);
    texts.forEach((t, i) => this.embedOne(t, out, i * this.dim));
    l2normalizeRows(out, this.dim);
    return out;
  }
}
