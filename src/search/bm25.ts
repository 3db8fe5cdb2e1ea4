/**
 * Sparse lexical retrieval: Okapi BM25 (k1 1.2, b 0.75) over the words of each chunk (Unicode letters and
 * digits, lowercased), an inverted index in typed arrays (CSR postings: chunk id, term frequency), saved as
 * checksummed block files beside a JSON vocabulary.
 *
 * Written by hand after measuring the library that would serve: MiniSearch 7.2 (BM25+, well kept) indexed the
 * 141k 16-token chunks of the parallel-Bibles database in 5 s but answered a chunk query in 48 ms (it scores
 * every matching chunk as a JS object, ~8k per query), i.e. about two hours for that database's 140k training
 * queries; these typed arrays accumulate the same scores in a Float32Array. Terms found in more than
 * `maxDfShare` of the chunks (the, and, of …) are not scored: they cost most of the time and move BM25 little
 * (the share is `config.index.bm25MaxDfShare`; words in fewer than BM25_ALWAYS_SCORED_DF chunks always count).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RetroError } from "../util/errors.ts";
import { readJson, writeJsonAtomic } from "../util/fsx.ts";
import { readBlock, writeBlock } from "../util/blockfile.ts";
import type {
  IndexBackend,
  IndexBatch,
  IndexContext,
  IndexFiles,
  SearchHits,
  SearchIndex,
  SearchQueries,
} from "./types.ts";

const K1 = 1.2,
  B = 0.75;

export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

export interface Bm25Meta {
  format: "retro-ts-bm25/1";
  chunks: number;
  terms: number;
  postings: number;
  avgLen: number;
  maxDfShare: number;
  vocab: string[];
}

export class Bm25Index {
  private readonly termId: Map<string, number>;
  private readonly scores: Float32Array;
  /** per posting: the BM25 term-frequency factor tf·(k1+1) / (tf + k1·(1 − b + b·len/avgLen)), computed once */
  private readonly weights: Float32Array;
  private readonly touched: Int32Array; // chunks with a non-zero score in the current query
  private constructor(
    readonly meta: Bm25Meta,
    private readonly offsets: Uint32Array, // [terms + 1]
    private readonly docs: Uint32Array, // [postings] chunk ids, ascending within a term
    private readonly tfs: Uint16Array, // [postings]
    private readonly lens: Uint16Array, // [chunks] words per chunk
  ) {
    this.termId = new Map(meta.vocab.map((w, i) => [w, i]));
    this.scores = new Float32Array(meta.chunks);
    this.touched = new Int32Array(meta.chunks);
    this.weights = new Float32Array(docs.length);
    const avg = meta.avgLen || 1;
    for (let t = 0; t < meta.terms; t++) {
      for (let p = offsets[t]; p < offsets[t + 1]; p++) {
        const tf = tfs[p];
        this.weights[p] = (tf * (K1 + 1)) / (tf + K1 * (1 - B + (B * lens[docs[p]]) / avg));
      }
    }
  }

  get size(): number {
    return this.meta.chunks;
  }

  /** Index chunk texts 0 … n−1 (given one by one, in order). */
  static build(n: number, text: (i: number) => string, maxDfShare = 0.1): Bm25Index {
    const vocab = new Map<string, number>();
    const lens = new Uint16Array(n);
    const perChunk: Uint32Array[] = new Array(n);
    const df: number[] = [];
    for (let i = 0; i < n; i++) {
      const ws = words(text(i));
      lens[i] = Math.min(ws.length, 65535);
      const ids = new Uint32Array(ws.length);
      ws.forEach((w, j) => {
        let id = vocab.get(w);
        if (id === undefined) vocab.set(w, (id = vocab.size)), df.push(0);
        ids[j] = id;
      });
      perChunk[i] = ids;
      for (const id of new Set(ids)) df[id]++;
    }
    const T = vocab.size;
    const offsets = new Uint32Array(T + 1);
    for (let t = 0; t < T; t++) offsets[t + 1] = offsets[t] + df[t];
    const P = offsets[T];
    const docs = new Uint32Array(P),
      tfs = new Uint16Array(P),
      fill = offsets.slice(0, T);
    for (let i = 0; i < n; i++) {
      const counts = new Map<number, number>();
      for (const id of perChunk[i]) counts.set(id, (counts.get(id) ?? 0) + 1);
      for (const [id, c] of counts) {
        docs[fill[id]] = i;
        tfs[fill[id]++] = Math.min(c, 65535);
      }
    }
    let total = 0;
    for (let i = 0; i < n; i++) total += lens[i];
    const meta: Bm25Meta = {
      format: "retro-ts-bm25/1",
      chunks: n,
      terms: T,
      postings: P,
      avgLen: n ? total / n : 0,
      maxDfShare,
      vocab: [...vocab.keys()],
    };
    return new Bm25Index(meta, offsets, docs, tfs, lens);
  }

  save(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    writeBlock(path.join(dir, "bm25-offsets.blk"), this.offsets, this.offsets.length, 1);
    writeBlock(path.join(dir, "bm25-docs.blk"), this.docs, this.docs.length, 1);
    writeBlock(path.join(dir, "bm25-tfs.blk"), this.tfs, this.tfs.length, 1);
    writeBlock(path.join(dir, "bm25-lens.blk"), this.lens, this.lens.length, 1);
    writeJsonAtomic(path.join(dir, "bm25.json"), this.meta);
  }

  static load(dir: string): Bm25Index {
    const meta = readJson<Bm25Meta>(path.join(dir, "bm25.json"), "BM25 index");
    if (meta.format !== "retro-ts-bm25/1" || !Array.isArray(meta.vocab))
      throw new RetroError("corrupt", `${dir}/bm25.json: not a retro-ts BM25 index`);
    const offsets = readBlock(path.join(dir, "bm25-offsets.blk"), Uint32Array).data;
    const docs = readBlock(path.join(dir, "bm25-docs.blk"), Uint32Array).data;
    const tfs = readBlock(path.join(dir, "bm25-tfs.blk"), Uint16Array).data;
    const lens = readBlock(path.join(dir, "bm25-lens.blk"), Uint16Array).data;
    const bad =
      offsets.length !== meta.terms + 1 ||
      meta.vocab.length !== meta.terms ||
      docs.length !== meta.postings ||
      tfs.length !== meta.postings ||
      lens.length !== meta.chunks ||
      offsets[meta.terms] !== meta.postings;
    if (bad) throw new RetroError("corrupt", `${dir}: BM25 index files do not agree with bm25.json`);
    for (let p = 0; p < docs.length; p++)
      if (docs[p] >= meta.chunks)
        throw new RetroError("corrupt", `${dir}: BM25 posting names chunk ${docs[p]}, the index has ${meta.chunks}`);
    return new Bm25Index(meta, offsets, docs, tfs, lens);
  }

  /** Top-k chunks of each query text: ids [q, k] (−1 padded) and BM25 scores, best first (ties: lower chunk id). */
  search(texts: string[], k: number): { ids: Int32Array; scores: Float32Array } {
    const ids = new Int32Array(texts.length * k).fill(-1),
      out = new Float32Array(texts.length * k).fill(-Infinity);
    const N = this.meta.chunks,
      maxDf = Math.max(BM25_ALWAYS_SCORED_DF, this.meta.maxDfShare * N);
    const sc = this.scores,
      touched = this.touched,
      docs = this.docs,
      w = this.weights,
      offsets = this.offsets;
    // a min-heap of the best k so far in two typed arrays, the worst on top: worse = lower score, or the same
    // score and a higher chunk id. (A heap of closures and destructuring swaps took 13× longer: 9 vs 0.66 ms per
    // query on the 765k-chunk bundled database, identical results.)
    const hid = new Int32Array(k),
      hs = new Float32Array(k);
    for (let q = 0; q < texts.length; q++) {
      const terms = new Map<number, number>();
      for (const word of words(texts[q])) {
        const t = this.termId.get(word);
        if (t !== undefined) terms.set(t, (terms.get(t) ?? 0) + 1);
      }
      let nt = 0;
      for (const [t, qtf] of terms) {
        const s = offsets[t],
          e = offsets[t + 1],
          df = e - s;
        if (df > maxDf) continue;
        const idf = Math.log(1 + (N - df + 0.5) / (df + 0.5)) * qtf;
        for (let p = s; p < e; p++) {
          const d = docs[p];
          if (sc[d] === 0) touched[nt++] = d;
          sc[d] += idf * w[p];
        }
      }
      let h = 0;
      for (let i = 0; i < nt; i++) {
        const d = touched[i],
          v = sc[d];
        let j: number;
        if (h < k) {
          for (j = h++; j > 0; ) {
            // sift up
            const p = (j - 1) >> 1;
            if (hs[p] < v || (hs[p] === v && hid[p] > d)) break;
            (hid[j] = hid[p]), (hs[j] = hs[p]), (j = p);
          }
        } else {
          if (v < hs[0] || (v === hs[0] && d > hid[0])) continue; // no better than the worst kept
          for (j = 0; ; ) {
            // sift down from the top
            const l = 2 * j + 1,
              r = l + 1;
            if (l >= h) break;
            const c = r < h && (hs[r] < hs[l] || (hs[r] === hs[l] && hid[r] > hid[l])) ? r : l;
            if (!(hs[c] < v || (hs[c] === v && hid[c] > d))) break;
            (hid[j] = hid[c]), (hs[j] = hs[c]), (j = c);
          }
        }
        (hid[j] = d), (hs[j] = v);
      }
      for (let i = 0; i < nt; i++) sc[touched[i]] = 0;
      const order = Array.from({ length: h }, (_, i) => i).sort((x, y) => hs[y] - hs[x] || hid[x] - hid[y]);
      order.forEach((i, j) => ((ids[q * k + j] = hid[i]), (out[q * k + j] = hs[i])));
    }
    return { ids, scores: out };
  }
}

/** id recorded as the embedder of a BM25 database: its queries are the chunk texts' words */
export const BM25_EMBEDDER = "bm25-words";

/** `Bm25Index` behind the `SearchIndex` interface; an add rebuilds the postings over old and new chunks. */
class Bm25SearchIndex implements SearchIndex {
  readonly description = "BM25";
  constructor(
    private idx: Bm25Index,
    private readonly ctx: IndexContext,
  ) {}
  get size(): number {
    return this.idx.size;
  }
  async add(b: IndexBatch): Promise<void> {
    if (b.first !== this.size) throw new Error(`BM25 index: ids must continue at ${this.size}, got ${b.first}`);
    const text = b.text ?? ((id: number) => this.ctx.chunkText(id));
    const n0 = this.size;
    // CSR postings are rebuilt whole: the old chunks' texts come from the database around the index
    this.idx = Bm25Index.build(
      n0 + b.count,
      (id) => (id < n0 ? this.ctx.chunkText(id) : text(id)),
      this.idx.meta.maxDfShare,
    );
  }
  async search(q: SearchQueries, k: number): Promise<SearchHits> {
    return this.idx.search(q.texts, k);
  }
  async save(dir: string): Promise<IndexFiles> {
    this.idx.save(dir);
    return {};
  }
}

/** Okapi BM25 over the chunks' words: no embedder, no vectors. */
/**
 * Words in at most this many chunks are always scored, whatever `bm25MaxDfShare`: skipping frequent words is a
 * speed-up for large databases, where they are function words; in a database of a few hundred chunks it would
 * skip the very words that tell its documents apart.
 */
export const BM25_ALWAYS_SCORED_DF = 1000;

export const bm25Backend: IndexBackend = {
  name: "bm25",
  forms: "BM25",
  reads: "texts",
  textEmbedderId: BM25_EMBEDDER,
  accepts: (description, store) => description.replace(/\s+/g, "").toUpperCase() === "BM25" && !store,
  check: () => {},
  isSaved: (dir) => fs.existsSync(path.join(dir, "bm25.json")),
  create: (s, _dim, ctx) =>
    new Bm25SearchIndex(
      Bm25Index.build(0, () => "", s.bm25MaxDfShare),
      ctx,
    ),
  open: async (dir, _rec, _s, ctx) => new Bm25SearchIndex(Bm25Index.load(dir), ctx),
};
