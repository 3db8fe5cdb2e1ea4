/**
 * The Retriever: texts or token chunks → the database's embedder → ANN search → exclusion rule → neighbour
 * ids and scores, and neighbour tokens [k, r] (chunk + continuation). One unit, used by the build's query
 * stage, generation and `retro db query`-like callers; the tensors are assembled by `Database.neighbourBlock`.
 */
import * as path from "node:path";
import type { Database } from "./database.ts";
import { openEmbedder, type Embedder } from "../embed/index.ts";
import { Rng } from "../util/rng.ts";
import { RetroError } from "../util/errors.ts";
import { bm25Backend } from "../search/bm25.ts";
import { indexBackend } from "../search/registry.ts";
import type { SearchHits, SearchIndex } from "../search/types.ts";
import { log } from "../util/progress.ts";

export interface SearchOptions {
  /** neighbours kept per query (padded with −1) */
  keep: number;
  /** candidates searched before the exclusion rule (default: the database's query.candidates, at least keep) */
  candidates?: number;
  /** per query: document keys (dataset·2³² + ordinal) whose chunks are excluded, or null */
  exclude?: (Set<number> | null)[];
}

/** [queries, keep] chunk ids (−1 where fewer were found) and the index's score of each (−∞ for −1) */
export type SearchResult = SearchHits;

/** A retrieved chunk, for citations: where it comes from and what it says. */
export interface Citation {
  chunk: number;
  dataset: string;
  document: number;
  score: number;
  text: string;
}

/**
 * The database's embedder. Embedders with state (lexical IDF, LSA projection) are fitted once, at build time,
 * on a random sample (not the first chunks) of the database; opening again reads the fitted state from embed/.
 */
export function openDbEmbedder(db: Database): Promise<Embedder> {
  const c = db.config;
  const fit = (n: number) => new Rng(c.seed).sample(db.nChunks, Math.min(db.nChunks, n)).map((id) => db.chunkText(id));
  return openEmbedder(c.embedder, path.join(db.dir, "embed"), fit);
}

export class Retriever {
  /** time spent embedding queries and searching the index, and queries answered (for benchmarks) */
  readonly timing = { embedS: 0, searchS: 0, queries: 0 };
  private constructor(
    readonly db: Database,
    readonly embedder: Embedder | null,
    private readonly index: SearchIndex,
  ) {}

  /** The database's fitted embedder and index (or its BM25 index); refuses an index built with another embedder. */
  static async open(db: Database): Promise<Retriever> {
    const man = db.manifest;
    if (!man.index)
      throw new RetroError("badInput", `${db.dir}: the index stage has not run ("retro db build --out ${db.dir}")`);
    if (indexBackend(man.index.description, db.config.index.store).reads === "texts")
      return new Retriever(db, null, await db.openIndex());
    const emb = await openDbEmbedder(db);
    if (emb.dim !== man.index.dim)
      throw new RetroError("mismatch", `embedder dimension ${emb.dim} ≠ index dimension ${man.index.dim}`);
    if (emb.id !== man.index.embedderId)
      throw new RetroError(
        "mismatch",
        `the index was built with embedder ${man.index.embedderId}, queries would use ${emb.id}`,
      );
    return new Retriever(db, emb, await db.openIndex());
  }

  /**
   * A BM25 retriever over the database's chunks, whatever its own index: the database's when it is BM25, else
   * built in memory (≈ 30 s for the bundled corpus's 120k chunks; nothing written). Question answering uses it
   * to find passages by the question's words, which a dense embedder of short queries does poorly.
   */
  static async bm25(db: Database): Promise<Retriever> {
    const man = db.manifest;
    if (man.index && indexBackend(man.index.description, db.config.index.store) === bm25Backend)
      return Retriever.open(db);
    log(`indexing the words of ${db.nChunks} chunks for BM25 passage retrieval...`);
    const idx = bm25Backend.create(db.config.index, 0, db);
    await idx.add({ first: 0, count: db.nChunks });
    return new Retriever(db, null, idx);
  }

  /** what the queries are embedded with (recorded with precomputed neighbours) */
  get embedderId(): string {
    return this.embedder?.id ?? this.db.manifest.index!.embedderId;
  }

  /** Nearest chunks of each text, the excluded documents' chunks skipped. */
  async search(texts: string[], o: SearchOptions): Promise<SearchResult> {
    const db = this.db,
      keep = o.keep;
    const kq = Math.min(Math.max(o.candidates ?? db.config.query.candidates, keep), db.nChunks);
    const ids = new Int32Array(texts.length * keep).fill(-1);
    const scores = new Float32Array(texts.length * keep).fill(-Infinity);
    if (texts.length === 0) return { ids, scores };
    const t0 = performance.now();
    const vecs = this.embedder ? await this.embedder.embed(texts) : null;
    const t1 = performance.now();
    const res = await this.index.search({ texts, vectors: vecs }, kq);
    this.timing.embedS += (t1 - t0) / 1000;
    this.timing.searchS += (performance.now() - t1) / 1000;
    this.timing.queries += texts.length;
    for (let q = 0; q < texts.length; q++) {
      const excluded = o.exclude?.[q] ?? null;
      let kept = 0;
      for (let t = 0; t < kq && kept < keep; t++) {
        const id = res.ids[q * kq + t];
        if (id < 0) break;
        if (excluded) {
          const doc = db.chunkDoc(id);
          if (excluded.has(db.train.docKey(doc))) continue;
        }
        ids[q * keep + kept] = id;
        scores[q * keep + kept++] = res.scores[q * kq + t];
      }
    }
    return { ids, scores };
  }

  /** The text a token chunk is searched by (end-of-document tokens removed). */
  chunkQueryText(tokens: ArrayLike<number>): string {
    return this.db.tokenizer.decode(tokens); // decode drops end-of-document tokens
  }

  /** Neighbours of token chunks: ids, scores and tokens [chunks, k, r]. */
  async retrieveChunks(
    chunks: ArrayLike<number>[],
    k: number,
    r: number,
    exclude?: (Set<number> | null)[],
  ): Promise<SearchResult & { tokens: Int32Array }> {
    const res = await this.search(
      chunks.map((c) => this.chunkQueryText(c)),
      { keep: k, exclude },
    );
    return { ...res, tokens: this.db.neighbourBlock(res.ids, chunks.length, k, k, r) };
  }

  /** What a neighbour id refers to, for citations (chunk + continuation text). */
  /** The top-k chunks of one text, as citations (best first); `retro db search` and the server's /v1/retrieve. */
  async searchText(query: string, k: number): Promise<Citation[]> {
    const r = await this.search([query], { keep: k });
    const out: Citation[] = [];
    for (let t = 0; t < k; t++) if (r.ids[t] >= 0) out.push(this.citation(r.ids[t], r.scores[t]));
    return out;
  }

  citation(id: number, score: number, r = 2 * this.db.m): Citation {
    const db = this.db,
      doc = db.chunkDoc(id);
    const ds = db.manifest.datasets?.[db.train.docDataset(doc)]?.name ?? String(db.train.docDataset(doc));
    return {
      chunk: id,
      dataset: ds,
      document: db.train.docOrdinal(doc),
      score,
      text: db.tokenizer.decode(db.neighbourTokens(id, r)),
    };
  }
}
