/** The index settings of a database config (`config.index`), declared once (src/util/settings.ts). */
import { defineSettings, type SettingValues } from "../util/settings.ts";

export const INDEX_SETTINGS = defineSettings({
  description: {
    kind: "text",
    flagName: "index",
    default: "HNSW32,SQfp16",
    help:
      "which backend and how it is built, in Faiss's vocabulary: Flat, HNSW<M>[,SQfp16|SQbf16|SQ8] (usearch, in " +
      "memory), IVF<n>,PQ<m> (LanceDB, on disk), or BM25",
  },
  store: {
    kind: "text",
    default: "",
    help:
      "where the index lives outside the database folder: LanceDB's dataset (a folder, or s3://…; empty: lance/ " +
      "in the database) or a Postgres server with pgvector (postgres://user@host/db; the password from PGPASSWORD)",
  },
  table: {
    kind: "text",
    default: "",
    help: "Postgres: the table of this database's vectors; empty: retro_ and a hash of the database folder's path",
  },
  nprobes: { kind: "int", min: 1, max: 1 << 20, default: 20, help: "IVF: inverted lists searched per query" },
  refineFactor: {
    kind: "int",
    min: 0,
    max: 1000,
    default: 0,
    help: "IVF-PQ: re-rank refineFactor·k candidates by their full vectors (0: PQ distances only)",
  },
  efConstruction: {
    kind: "int",
    min: 1,
    max: 1 << 16,
    default: 128,
    help: "graph backends: candidate list while inserting",
  },
  efSearch: {
    kind: "int",
    min: 1,
    max: 1 << 16,
    default: 256,
    help: "graph backends: candidate list while searching (Megatron's default)",
  },
  bm25MaxDfShare: {
    kind: "num",
    min: 0,
    max: 1,
    default: 0.1,
    help:
      "BM25: words in more than this share of the chunks (the, and, of) are not scored, for speed; a word in " +
      "fewer than 1,000 chunks is always scored, so a small corpus scores every word",
  },
  threads: { kind: "int", min: 1, max: 256, default: 2, help: "search threads" },
  addThreads: {
    kind: "int",
    min: 1,
    max: 256,
    default: 1,
    help: "threads while adding: 1 builds the same graph every run; more is faster but not reproducible",
  },
});

export type IndexSettings = SettingValues<typeof INDEX_SETTINGS>;
