/**
 * The `SearchIndex` interface is the whole contract between a database and its index: a backend written here, in
 * the test (exact search in plain arrays, saved as a JSON file), is registered, and a database built with it
 * answers the Retriever and takes `db add` with no other code knowing it exists. Unknown descriptions are refused
 * with every form the backends read.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { addDocuments } from "../../src/db/add.ts";
import { indexBackend, registerIndexBackend } from "../../src/search/registry.ts";
import type { IndexBackend, IndexBatch, SearchHits, SearchIndex, SearchQueries } from "../../src/search/types.ts";
import type { RetroError } from "../../src/util/errors.ts";
import { smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

/** Exact inner-product search over rows kept in a JS array. */
class ListIndex implements SearchIndex {
  readonly description = "List";
  constructor(
    readonly dim: number,
    public rows: number[][] = [],
  ) {}
  get size(): number {
    return this.rows.length;
  }
  async add(b: IndexBatch): Promise<void> {
    assert.equal(b.first, this.rows.length);
    for (let i = 0; i < b.count; i++) this.rows.push(Array.from(b.vectors!.subarray(i * this.dim, (i + 1) * this.dim)));
  }
  async search(q: SearchQueries, k: number): Promise<SearchHits> {
    const nq = q.vectors!.length / this.dim;
    const ids = new Int32Array(nq * k).fill(-1),
      scores = new Float32Array(nq * k).fill(-Infinity);
    for (let i = 0; i < nq; i++) {
      const v = q.vectors!.subarray(i * this.dim, (i + 1) * this.dim);
      const all = this.rows
        .map((r, id) => ({ id, s: r.reduce((a, x, j) => a + x * v[j], 0) }))
        .sort((a, b) => b.s - a.s || a.id - b.id);
      all.slice(0, k).forEach((h, j) => ((ids[i * k + j] = h.id), (scores[i * k + j] = h.s)));
    }
    return { ids, scores };
  }
  async save(dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "list.json"), JSON.stringify(this.rows));
    return {};
  }
}

const listBackend: IndexBackend = {
  name: "list",
  forms: "List",
  reads: "vectors",
  accepts: (d) => d === "List",
  check: () => {},
  isSaved: (dir) => fs.existsSync(path.join(dir, "list.json")),
  create: (_s, dim) => new ListIndex(dim),
  open: async (dir, rec) => {
    const rows = JSON.parse(fs.readFileSync(path.join(dir, "list.json"), "utf8")) as number[][];
    assert.equal(rows.length, rec.size);
    return new ListIndex(rec.dim, rows);
  },
};

test("a backend registered from outside serves build, retrieval and db add through SearchIndex alone", async () => {
  registerIndexBackend(listBackend);
  assert.throws(
    () => registerIndexBackend(listBackend),
    (e: RetroError) => e.code === 2 && /already registered/.test(e.message),
  );
  const root = tmpDir("retro-search-");
  const corpus = writeTextCorpus(path.join(root, "corpus"), 12, 600);
  const dir = path.join(root, "db");
  await buildDatabase(dir, smallConfig(corpus, { index: { description: "List" } }));
  assert.ok(fs.existsSync(path.join(dir, "index", "list.json")));
  const db = new Database(dir);
  const r = await Retriever.open(db);
  const text = db.chunkText(5);
  const hit = await r.search([text], { keep: 1 });
  assert.ok(hit.scores[0] > 0.99, `a chunk's own text finds a chunk as close as itself (score ${hit.scores[0]})`);
  const n0 = db.nChunks;
  db.close();
  const news = path.join(root, "news.txt");
  fs.writeFileSync(news, "Quorvath the lamplighter of Ensel kept eleven blue herons on the roof of the mill.\n");
  await addDocuments(dir, { name: "news", source: "text", path: news });
  const db1 = new Database(dir);
  assert.equal(db1.manifest.index!.size, db1.nChunks);
  assert.ok(db1.nChunks > n0);
  const r1 = await Retriever.open(db1);
  const top = await r1.search(["Quorvath the lamplighter of Ensel kept eleven blue herons"], { keep: 1 });
  assert.equal(r1.citation(top.ids[0], top.scores[0]).dataset, "news");
  db1.close();
});

test("index descriptions: one lookup; an unknown one is refused with the forms every backend reads", () => {
  assert.equal(indexBackend("HNSW32,SQfp16").name, "usearch");
  assert.equal(indexBackend("Flat").reads, "vectors");
  assert.equal(indexBackend("bm25").reads, "texts");
  assert.equal(indexBackend("IVF4096,PQ16").name, "lancedb");
  assert.throws(
    () => indexBackend("LSH"),
    (e: RetroError) =>
      e.code === 2 && /IVF<n>,PQ<m>/.test(e.message) && /HNSW<M>/.test(e.message) && /BM25/.test(e.message),
  );
  assert.throws(
    () => indexBackend("HNSW"),
    (e: RetroError) => e.code === 2 && /not supported/.test(e.message),
  );
});
