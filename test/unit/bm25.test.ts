/** BM25: scores against the formula by hand, the index on disk, and a database built with it. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Bm25Index, words } from "../../src/search/bm25.ts";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { RetroError } from "../../src/util/errors.ts";
import { smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

process.env.RETRO_QUIET = "1";

test("BM25 scores equal Okapi BM25 (k1 1.2, b 0.75) computed by hand; ties by chunk id; frequent terms skipped", () => {
  const docs = ["A b", "a C c", "b", "d"];
  const idx = Bm25Index.build(docs.length, (i) => docs[i], 1);
  assert.deepEqual(words("Hello, wörld 42!"), ["hello", "wörld", "42"]);
  const N = 4,
    avg = (2 + 3 + 1 + 1) / 4;
  const idf = (df: number) => Math.log(1 + (N - df + 0.5) / (df + 0.5));
  const term = (tf: number, len: number, df: number) => (idf(df) * tf * 2.2) / (tf + 1.2 * (0.25 + (0.75 * len) / avg));
  const r = idx.search(["c", "b a", "zzz"], 3);
  assert.deepEqual(Array.from(r.ids.subarray(0, 3)), [1, -1, -1]);
  assert.ok(Math.abs(r.scores[0] - term(2, 3, 1)) < 1e-5);
  // "b a": chunk 0 has both, chunk 2 b only, chunk 1 a only
  const s0 = term(1, 2, 2) + term(1, 2, 2),
    s1 = term(1, 3, 2),
    s2 = term(1, 1, 2);
  const want = [
    [0, s0],
    [2, s2],
    [1, s1],
  ].sort((x, y) => (y[1] as number) - (x[1] as number));
  assert.deepEqual(
    Array.from(r.ids.subarray(3, 6)),
    want.map((w) => w[0]),
  );
  want.forEach((w, j) => assert.ok(Math.abs(r.scores[3 + j] - (w[1] as number)) < 1e-5));
  assert.deepEqual(Array.from(r.ids.subarray(6, 9)), [-1, -1, -1]);
  const twins = Bm25Index.build(3, (i) => ["x y", "z", "x y"][i], 1);
  assert.deepEqual(Array.from(twins.search(["x"], 2).ids), [0, 2], "equal scores: the lower chunk id first");
  // a term in more than maxDfShare of the chunks is not scored, unless it is in fewer than 1,000 chunks: in a
  // small database the "frequent" words are the ones that tell its documents apart
  assert.equal(Bm25Index.build(docs.length, (i) => docs[i], 0.3).search(["a"], 2).ids[0], 0);
  const big = Bm25Index.build(3000, (i) => `common ${i % 6 === 0 ? "sixth" : "other"}`, 0.1);
  assert.equal(big.search(["common"], 2).ids[0], -1, "in 3,000 chunks > max(1,000, 10 %): skipped");
  assert.equal(big.search(["sixth"], 2).ids[0], 0, "in 500 chunks (17 %), under 1,000: scored");
});

test("BM25 index: save / load round trip; damaged files refused", () => {
  const dir = tmpDir("bm25-");
  const docs = Array.from({ length: 50 }, (_, i) => `chunk ${i} word${i % 7} other${i % 3}`);
  const idx = Bm25Index.build(docs.length, (i) => docs[i]);
  idx.save(dir);
  const back = Bm25Index.load(dir);
  assert.deepEqual(back.search(["word3 other1"], 5), idx.search(["word3 other1"], 5));
  const f = path.join(dir, "bm25-docs.blk");
  const b = fs.readFileSync(f);
  b[b.length - 1] ^= 0xff;
  fs.writeFileSync(f, b);
  assert.throws(
    () => Bm25Index.load(dir),
    (e: unknown) => e instanceof RetroError && e.code === 5 && /checksum/.test(e.message),
  );
});

test("a database with index BM25: no embedder, neighbours from the words, the sample's own documents excluded", async () => {
  const root = tmpDir("bm25db-");
  const dir = path.join(root, "db");
  const man = await buildDatabase(
    dir,
    smallConfig(writeTextCorpus(path.join(root, "corpus"), 30, 1200), { index: { description: "BM25" } }),
  );
  assert.equal(man.index!.description, "BM25");
  assert.equal(man.embeddings!.dim, 0);
  assert.ok(!fs.existsSync(path.join(dir, "embed")) || fs.readdirSync(path.join(dir, "embed")).length === 0);
  const db = new Database(dir);
  const retriever = await Retriever.open(db);
  assert.equal(retriever.embedder, null);
  // a database chunk's own text finds itself first
  const c = 17;
  const r = await retriever.search([db.chunkText(c)], { keep: 3 });
  assert.equal(r.ids[0], c);
  // precomputed neighbours never come from a document of their own sample
  const nb = db.sampleNeighbours("train", 0);
  const keys = new Set<number>();
  const reader = db.train;
  for (let d = reader.docAt(0); d < reader.nDocs && reader.docStart(d) <= 64; d++) keys.add(reader.docOrdinal(d));
  let found = 0;
  for (const id of nb) if (id >= 0) found++, assert.ok(!keys.has(reader.docOrdinal(db.chunkDoc(id))));
  assert.ok(found > 0);
});
