/**
 * The LanceDB backend (IVF-PQ on disk) on the one SearchIndex interface: a database built with `IVF8,PQ8`
 * finds the exact nearest chunks (recall@10 against a brute-force search over the stored embeddings), its
 * neighbours feed training like any other index's, and Faiss forms LanceDB lacks are refused. What every backend
 * must do (batched search, a crashed add, a foreign store, eval qa) is in backends.test.ts.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase } from "../../src/db/build.ts";
import { diskBytes } from "../../src/util/fsx.ts";
import { cli, retrieverRecallAt10, smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

let root = "",
  dir = "";
const CFG = (corpus: string) =>
  smallConfig(corpus, {
    index: { description: "IVF8,PQ8", nprobes: 8, refineFactor: 20, threads: 1 },
    query: { seq: 64, candidates: 20, keep: 4, blockSize: 8 },
  });

before(async () => {
  root = tmpDir("retro-lance-");
  process.env.RETRO_QUIET = "1";
  dir = path.join(root, "db");
  await buildDatabase(dir, CFG(writeTextCorpus(path.join(root, "corpus"), 30, 1500)));
});

test("IVF8,PQ8 on LanceDB: the dataset on disk in lance/, recall@10 ≥ 0.9 against exact search", async () => {
  const man = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  assert.equal(man.index.description, "IVF8,PQ8");
  assert.equal(man.index.store, "lance", "recorded relative to the database: the folder moves as one");
  assert.ok(Number.isInteger(man.index.version));
  assert.ok(fs.existsSync(path.join(dir, "lance", "chunks.lance")));
  const recall = await retrieverRecallAt10(dir, [0, 97, 400, 811, 1203]);
  assert.ok(recall >= 0.9, `recall@10 ${recall}`);
  // the query stage's neighbours are there, and db search answers through the same backend
  assert.ok(man.neighbours.train.samples > 0);
  const s = cli(["db", "search", "--db", dir, "--k", "2", "--json", "the whale"]);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout.trim().split("\n").length, 2);
});

test("LanceDB: L2-trained on unit vectors, scores are the exact dot products; row ids are the chunk ids", async () => {
  const { Database } = await import("../../src/db/database.ts");
  const { blockName, blockRanges, readBlock } = await import("../../src/util/blockfile.ts");
  const file = path.join(dir, "index", "lancedb.json");
  const saved = JSON.parse(fs.readFileSync(file, "utf8"));
  assert.equal(saved.metric, "l2");
  assert.equal(saved.rowIds, true, "save found row id = chunk id");
  const search = async () => {
    const db = new Database(dir);
    try {
      const dim = db.manifest.embeddings!.dim;
      const all = new Float32Array(db.nChunks * dim);
      for (const [s, e] of blockRanges(db.nChunks, db.config.embedBlockSize))
        all.set(readBlock(blockName(path.join(dir, "embed"), s, e), Float32Array).data, s * dim);
      const at = [3, 250, 777];
      const qs = new Float32Array(at.length * dim);
      at.forEach((c, q) => qs.set(all.subarray(c * dim, (c + 1) * dim), q * dim));
      const index = await db.openIndex();
      const hits = await index.search({ texts: [], vectors: qs }, 5);
      // a query that embeds to 0 (no known word) scores 0 against every chunk, as its dot product does
      const zero = await index.search({ texts: [], vectors: new Float32Array(dim) }, 3);
      for (let t = 0; t < 3; t++) assert.ok(Math.abs(zero.scores[t]) < 1e-3, `a zero query scores ${zero.scores[t]}`);
      at.forEach((c, q) => {
        // a chunk is its own nearest neighbour (a repeated chunk may tie with it)
        assert.ok(Math.abs(hits.scores[q * 5] - 1) < 1e-3, `chunk ${c}: top score ${hits.scores[q * 5]}`);
        for (let t = 0; t < 5; t++) {
          const id = hits.ids[q * 5 + t];
          let dot = 0;
          for (let j = 0; j < dim; j++) dot += qs[q * dim + j] * all[id * dim + j];
          // re-ranked by full vectors (refineFactor 20): the score is the dot product itself
          assert.ok(
            Math.abs(hits.scores[q * 5 + t] - dot) < 1e-3,
            `chunk ${c}, hit ${id}: ${hits.scores[q * 5 + t]} vs ${dot}`,
          );
        }
      });
      return Array.from(hits.ids);
    } finally {
      db.close();
    }
  };
  const byRowId = await search();
  // the same table read through its id column (how a table whose row ids are not the chunk ids is read)
  fs.writeFileSync(file, JSON.stringify({ ...saved, rowIds: false }));
  try {
    assert.deepEqual(await search(), byRowId);
    // a record with a metric it cannot have: a clear error, not a search under the wrong distance
    fs.writeFileSync(file, JSON.stringify({ ...saved, metric: "cosine" }));
    await assert.rejects(search(), (e: Error) => e.name === "RetroError" && /metric "cosine"/.test(e.message));
  } finally {
    fs.writeFileSync(file, JSON.stringify(saved));
  }
});

test("LanceDB: an index built again replaces the table whole (no old versions kept); a table it did not write is refused", async () => {
  const lancedb = await import("@lancedb/lancedb");
  const store = path.join(dir, "lance");
  const versions = async () => {
    const t = await (await lancedb.connect(store)).openTable("chunks");
    try {
      return (await t.listVersions()).length;
    } finally {
      t.close();
    }
  };
  const before = await versions();
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  fs.rmSync(path.join(dir, "index"), { recursive: true });
  await buildDatabase(dir, cfg); // the index from the saved embeddings, into the same store
  assert.equal(await versions(), before, "the earlier build's versions are gone");
  assert.ok((await retrieverRecallAt10(dir, [0, 400])) >= 0.9);

  // a store that holds someone else's "chunks" table: refused, the table kept
  const foreign = path.join(root, "foreign");
  const conn = await lancedb.connect(foreign);
  (await conn.createTable("chunks", [{ id: 1, note: "not retro-ts's" }])).close();
  const other = path.join(root, "db-foreign");
  await assert.rejects(
    buildDatabase(other, { ...cfg, index: { ...cfg.index, store: foreign } }),
    (e: Error & { kind?: string }) => e.kind === "mismatch" && /did not write/.test(e.message),
  );
  assert.equal(await (await conn.openTable("chunks")).countRows(), 1);
});

test("LanceDB: a database moved elsewhere with its lance/ opens and answers as before", async () => {
  const moved = path.join(root, "moved", "db");
  fs.mkdirSync(path.dirname(moved), { recursive: true });
  const before = await retrieverRecallAt10(dir, [0, 97, 400]);
  fs.cpSync(dir, moved, { recursive: true });
  const aside = `${dir}-aside`;
  fs.renameSync(dir, aside); // the old place is gone: nothing may be read from it
  try {
    assert.equal(await retrieverRecallAt10(moved, [0, 97, 400]), before);
    const s = cli(["db", "search", "--db", moved, "--k", "1", "--json", "the whale"]);
    assert.equal(s.code, 0, s.stderr);
  } finally {
    fs.renameSync(aside, dir);
  }
});

test("LanceDB: db add keeps the version it started from and removes those before it (the store stays two copies)", async () => {
  const lancedb = await import("@lancedb/lancedb");
  const { addDocuments } = await import("../../src/db/add.ts");
  const store = path.join(dir, "lance");
  const record = () =>
    JSON.parse(fs.readFileSync(path.join(dir, "index", "lancedb.json"), "utf8")) as {
      version: number;
      zeroRows: number;
    };
  const recorded = () => record().version;
  const seen = [recorded()];
  const rows: number[] = [];
  for (let i = 0; i < 4; i++) {
    const notes = writeTextCorpus(path.join(root, `notes${i}`), 40 + 3 * (i + 1), 1500);
    for (const f of fs.readdirSync(notes).slice(0, 40 + 3 * i)) fs.rmSync(path.join(notes, f)); // 3 new chapters
    const size = (JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as { index: { size: number } })
      .index.size;
    rows.push(size - record().zeroRows); // a chunk whose vector is 0 has no row

    await addDocuments(dir, { name: `notes${i}`, source: "text", path: notes, weight: 0 });
    seen.push(recorded());
  }
  const t = await (await lancedb.connect(store)).openTable("chunks");
  try {
    const versions = (await t.listVersions()).map((v) => v.version);
    // the version the last add started from stays (readers still at it, or the add had it crashed): nothing before
    assert.equal(Math.min(...versions), seen[3], `versions ${versions} after recorded ${seen}`);
    assert.ok(versions.includes(seen[4]));
    assert.deepEqual(Object.keys(await (await t.tags()).list()), [], "the guard tag is gone");
    await t.checkout(seen[3]);
    assert.equal(await t.countRows(), rows[3], "the version before the last add reads as it was");
    await t.checkoutLatest();
    const live = (await t.stats()).totalBytes;
    const ratio = diskBytes(store) / live;
    assert.ok(ratio < 2.5, `the store is ${ratio.toFixed(2)}× its live table (each add used to keep a copy)`);
  } finally {
    t.close();
  }
  // the latest version answers: a passage of the last add's text finds its chunks
  const last = path.join(root, "notes3");
  const text = fs.readFileSync(path.join(last, fs.readdirSync(last)[0]), "utf8").slice(0, 240);
  const s = cli(["db", "search", "--db", dir, "--k", "5", "--json", text]);
  assert.equal(s.code, 0, s.stderr);
  const found = s.stdout
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { dataset: string }).dataset);
  assert.ok(found.includes("notes3"), found.join(", "));
});

test("LanceDB: a chunk whose vector is 0 has no row (under L2 it scored 1/2 against every query); counted in the record", async () => {
  const { lancedbBackend } = await import("../../src/search/lancedb.ts");
  const { INDEX_SETTINGS } = await import("../../src/search/settings.ts");
  const { defaultsOf } = await import("../../src/util/settings.ts");
  const out = path.join(root, "zeros");
  const s = { ...defaultsOf(INDEX_SETTINGS), description: "IVF4,PQ4", nprobes: 4, refineFactor: 0, threads: 1 };
  const dim = 8,
    n = 600,
    zeros = [0, 17, 300, n - 1]; // the table's ends too (save checks row ids there)
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const unit = (v: Float32Array) => {
    const l = Math.hypot(...v);
    return v.map((x) => x / l);
  };
  // the chunks in the first half of the dimensions; the queries mostly in the other half (dot products ≤ 0.4)
  const half = (first: boolean) =>
    unit(Float32Array.from({ length: dim }, (_, j) => (j < dim / 2 === first ? rand() : 0)));
  const vectors = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) if (!zeros.includes(i)) vectors.set(half(true), i * dim);
  const ctx = { chunkText: () => "", dir: out, embedderId: "test" };
  const index = lancedbBackend.create(s, dim, ctx);
  await index.add({ first: 0, count: 400, vectors: vectors.subarray(0, 400 * dim) });
  await index.add({ first: 400, count: n - 400, vectors: vectors.subarray(400 * dim) });
  const files = await index.save(path.join(out, "index"));
  const saved = JSON.parse(fs.readFileSync(path.join(out, "index", "lancedb.json"), "utf8"));
  assert.equal(saved.zeroRows, zeros.length);
  assert.equal(saved.rowIds, true, "row ids checked at rows that have one");
  const rec = { description: s.description, dim, size: n, embedderId: "test", buildSeconds: 0, ...files };
  const opened = await lancedbBackend.open(path.join(out, "index"), rec, s, ctx);
  assert.equal(opened.size, n);
  // queries far from every chunk (dot products under 1/2): the zero chunks used to come first, at 1/2
  const nq = 20,
    k = 10;
  const qs = new Float32Array(nq * dim);
  for (let q = 0; q < nq; q++) {
    const a = half(true),
      b = half(false);
    qs.set(
      a.map((x, j) => 0.4 * x + Math.sqrt(1 - 0.16) * b[j]),
      q * dim,
    );
  }
  const hits = await opened.search({ texts: [], vectors: qs }, k);
  for (let h = 0; h < nq * k; h++) assert.ok(!zeros.includes(hits.ids[h]), `a zero chunk (${hits.ids[h]}) was found`);
  for (let q = 0; q < nq; q++) {
    let best = -1;
    for (let i = 0; i < n; i++) {
      let dot = 0;
      for (let j = 0; j < dim; j++) dot += qs[q * dim + j] * vectors[i * dim + j];
      best = Math.max(best, dot);
    }
    assert.ok(hits.scores[q * k] > best - 0.1, `query ${q}: top score ${hits.scores[q * k]}, best dot ${best}`);
  }
  // a record whose count of rows without a vector is not a count: corrupt, not a silent mis-count
  fs.writeFileSync(path.join(out, "index", "lancedb.json"), JSON.stringify({ ...saved, zeroRows: -1 }));
  await assert.rejects(
    lancedbBackend.open(path.join(out, "index"), rec, s, ctx),
    (e: Error & { kind?: string }) => e.kind === "corrupt" && /zeroRows -1/.test(e.message),
  );
});
