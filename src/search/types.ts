/**
 * The one interface of a retrieval index. A database (build, `db add`), the Retriever, `eval qa` and `retro serve`
 * talk to an index only through `SearchIndex`, and find its implementation through the registry (registry.ts) by
 * the description string in the database config (`HNSW32,SQfp16`, `Flat`, `BM25`, …). A backend owns the files it
 * writes under the database's `index/` folder and what its manifest record must hold to open them again.
 *
 * Shaped after Faiss's `Index` (`add`, `search`, `write_index`/`read_index`) and LanceDB's table: async wherever a
 * backend may need it (a disk or network store), so that a backend that is not in this process fits unchanged.
 */

/** The index settings of a database config (`config.index`): the table in settings.ts. */
export type { IndexSettings } from "./settings.ts";
import type { IndexSettings } from "./settings.ts";

/** What the manifest records of a built index (`manifest.index`). */
export interface IndexRecord {
  description: string;
  /** vector dimension (0 for an index of texts) */
  dim: number;
  /** chunks indexed */
  size: number;
  /** the embedder its vectors (or, for an index of texts, its query words) come from */
  embedderId: string;
  buildSeconds: number;
  /** size and CRC-32 of the index file (vector backends), checked before every load */
  bytes?: number;
  crc32?: number;
  /** a store outside the index folder (LanceDB, Postgres): where it is (no password), the table version the
   * database is at (LanceDB), the table (Postgres) */
  store?: string;
  version?: number;
  table?: string;
}

/** What `save` wrote that `open` checks again (merged into the manifest record). */
export type IndexFiles = Pick<IndexRecord, "bytes" | "crc32" | "store" | "version" | "table">;

/** Top-k results: [queries, k] chunk ids (−1 where fewer were found) and scores, best first. */
export interface SearchHits {
  ids: Int32Array;
  scores: Float32Array;
}

/** Queries in both forms; a backend reads the one it indexes (`IndexBackend.reads`). */
export interface SearchQueries {
  texts: string[];
  /** [queries, dim] L2-normalised embeddings; null for a backend that reads texts */
  vectors: Float32Array | null;
}

/** Chunks `first … first+count−1` to add, in the form the backend reads. */
export interface IndexBatch {
  first: number;
  count: number;
  /** [count, dim] (backends that read vectors) */
  vectors?: Float32Array;
  /** the text of chunk `id` of this batch (backends that read texts) */
  text?: (id: number) => string;
}

/** What a backend may read from the database around it. */
export interface IndexContext {
  /** the text of a chunk already in the database (an index of texts rebuilt on add reads the old ones) */
  chunkText(id: number): string;
  /** the database folder (a backend whose store lives beside the index: LanceDB's `lance/`) */
  readonly dir?: string;
  /** the embedder of the vectors added (a store outside the folder records it; `open` checks it: identity.ts) */
  readonly embedderId?: string;
}

export interface SearchIndex {
  readonly description: string;
  /** chunks indexed */
  readonly size: number;
  /** Add chunks with consecutive ids; `batch.first` must be the current size. */
  add(batch: IndexBatch): Promise<void>;
  search(queries: SearchQueries, k: number): Promise<SearchHits>;
  /** Write the index's files into `dir` (created if absent; each file atomically). */
  save(dir: string): Promise<IndexFiles>;
}

export interface OpenOptions {
  /** view the file instead of reading it, where the backend can (default true) */
  mmap?: boolean;
}

export interface IndexBackend {
  /** its name in messages and docs */
  readonly name: string;
  /** the description forms it reads, for messages ("Flat, HNSW<M>, …") */
  readonly forms: string;
  /** "vectors": it indexes the embedder's vectors; "texts": the chunks' words (no embedder is fitted) */
  readonly reads: "vectors" | "texts";
  /** the embedder id recorded for an index of texts (its queries are words, not vectors) */
  readonly textEmbedderId?: string;
  /** Is this description (in this store: config.index.store, "" for the database folder) one of this backend's? */
  accepts(description: string, store: string): boolean;
  /** Refuse (RetroError "usage", naming the value) settings it accepts by shape but cannot build. */
  check(settings: IndexSettings): void;
  /** Are the index's files in `dir`? (a build whose index was deleted builds it again) */
  isSaved(dir: string): boolean;
  /** An empty index. */
  create(settings: IndexSettings, dim: number, ctx: IndexContext): SearchIndex;
  /** The index saved in `dir`, checked against its manifest record. */
  open(
    dir: string,
    record: IndexRecord,
    settings: IndexSettings,
    ctx: IndexContext,
    o?: OpenOptions,
  ): Promise<SearchIndex>;
}
