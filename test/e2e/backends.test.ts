/**
 * One conformance suite, run per index backend through the one SearchIndex interface: usearch (HNSW in the
 * database folder), LanceDB (IVF-PQ in a Lance dataset) and Postgres + pgvector (a real Postgres engine started
 * here: PGlite with its vector extension behind pglite-socket, the wire protocol on a loopback port). Each
 * backend's database is built from the same corpus with the same embedder, and must:
 *   - find the exact nearest chunks (recall@10 against brute force), a batch of queries answered as one at a time;
 *   - keep `db add`'s promise: an add that crashed before its manifest commit is never read, the next appends;
 *   - finish a build killed at several moments when it is run again;
 *   - refuse a store that is not this database's (another embedder's vectors, another dimension), clearly;
 *   - give `eval qa` the same passages, hence the same exact match, as every other backend.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { addDocuments } from "../../src/db/add.ts";
import { train } from "../../src/train/trainer.ts";
import { loadModel } from "../../src/model/checkpoint.ts";
import { evalQa } from "../../src/qa/evaluate.ts";
import { RetroError } from "../../src/util/errors.ts";
import { blockName, blockRanges, readBlock } from "../../src/util/blockfile.ts";
import { spawn } from "node:child_process";
import { ROOT, retrieverRecallAt10, smallConfig, startPgvector, tmpDir, writeTextCorpus } from "../helpers.ts";

interface Backend {
  name: string;
  index: () => Record<string, unknown>;
  /** point database `dir`'s index at the store of database `other` (its record and index files) */
  swapStore: (dir: string, other: string) => void;
}

let stopPg: () => Promise<void>;
let url = "",
  root = "",
  corpus = "",
  otherCorpus = "";

const readManifest = (d: string) => JSON.parse(fs.readFileSync(path.join(d, "manifest.json"), "utf8"));
const writeManifest = (d: string, m: unknown) => fs.writeFileSync(path.join(d, "manifest.json"), JSON.stringify(m));

/** the index record's store fields and the index folder's files of `other`, under `dir`'s manifest */
function takeStoreRecord(dir: string, other: string, keys: string[]): void {
  const m = readManifest(dir),
    o = readManifest(other);
  for (const k of keys) m.index[k] = o.index[k];
  writeManifest(dir, m);
  fs.rmSync(path.join(dir, "index"), { recursive: true });
  fs.cpSync(path.join(other, "index"), path.join(dir, "index"), { recursive: true });
}

const BACKENDS: Backend[] = [
  {
    name: "usearch",
    index: () => ({ description: "HNSW16", efConstruction: 64, efSearch: 64, threads: 1 }),
    // a folder-local index: another database's file under this manifest (its size and CRC are this one's)
    swapStore: (dir, other) => fs.cpSync(path.join(other, "index"), path.join(dir, "index"), { recursive: true }),
  },
  {
    name: "lancedb",
    index: () => ({ description: "IVF8,PQ8", nprobes: 8, refineFactor: 20, threads: 2 }),
    swapStore: (dir, other) => {
      takeStoreRecord(dir, other, ["store", "version"]);
      // the other database's own lance/ is recorded relative to it: name it as a --store pointed there would
      const store = path.resolve(other, readManifest(other).index.store);
      const m = readManifest(dir);
      m.index.store = store;
      writeManifest(dir, m);
      const file = path.join(dir, "index", "lancedb.json");
      fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, "utf8")), store }));
    },
  },
  {
    name: "pgvector",
    index: () => ({ description: "HNSW16", store: url, efConstruction: 64, efSearch: 64, threads: 1 }),
    swapStore: (dir, other) => takeStoreRecord(dir, other, ["store", "table"]),
  },
];

const dbOf = (b: Backend, which = "db") => path.join(root, b.name, which);
const config = (b: Backend, over: Record<string, unknown> = {}, from = corpus) =>
  smallConfig(from, { index: b.index(), query: { seq: 64, candidates: 20, keep: 4, blockSize: 8 }, ...over });

before(async () => {
  ({ url, stop: stopPg } = await startPgvector());
  root = tmpDir("retro-backends-");
  process.env.RETRO_QUIET = "1";
  corpus = writeTextCorpus(path.join(root, "corpus"), 24, 1500);
  otherCorpus = writeTextCorpus(path.join(root, "other-corpus"), 12, 1500);
  for (const b of BACKENDS) await buildDatabase(dbOf(b), config(b));
});

after(() => stopPg());

for (const b of BACKENDS) {
  test(`${b.name}: recall@10 ≥ 0.9 against exact search; 70 queries in one call = each alone, best first`, async () => {
    const dir = dbOf(b);
    const recall = await retrieverRecallAt10(dir, [0, 97, 400, 811, 1203]);
    assert.ok(recall >= 0.9, `recall@10 ${recall}`);
    const db = new Database(dir);
    try {
      const index = await db.openIndex();
      const dim = db.manifest.embeddings!.dim;
      const [s, e] = blockRanges(db.nChunks, db.config.embedBlockSize)[0];
      const vecs = readBlock(blockName(path.join(dir, "embed"), s, e), Float32Array).data.subarray(0, 70 * dim);
      assert.equal(vecs.length, 70 * dim);
      const all = await index.search({ texts: [], vectors: vecs }, 5);
      for (let q = 0; q < 70; q++) {
        const one = await index.search({ texts: [], vectors: vecs.subarray(q * dim, (q + 1) * dim) }, 5);
        assert.deepEqual(Array.from(all.ids.subarray(q * 5, q * 5 + 5)), Array.from(one.ids), `query ${q}`);
        for (let t = 1; t < 5; t++) assert.ok(all.scores[q * 5 + t] <= all.scores[q * 5 + t - 1]);
      }
    } finally {
      db.close();
    }
  });
}

test("eval qa through each backend: the same passages, so the same exact match and F1", async () => {
  // a tiny GPT (a few steps) on the first backend's database: every database has the same tokenizer
  const run = path.join(root, "gpt");
  await train(run, {
    db: dbOf(BACKENDS[0]),
    model: { model: "gpt", d: 32, heads: 2, layers: 2, seq: 64, vocab: 400 },
    steps: 3,
    batch: 2,
    evalEvery: 1e9,
    saveEvery: 1e9,
    evalBatches: 0,
    threads: 1,
  });
  const { model } = loadModel(run);
  const first = new Database(dbOf(BACKENDS[0]));
  const items = [3, 50, 120, 200, 333, 410, 555, 700].map((c, i) => {
    const words = first.chunkText(c).trim().split(/\s+/);
    return { id: `q${i}`, question: words.slice(0, 6).join(" "), answers: [words[6] ?? "whale"], passages: [] };
  });
  first.close();
  const reports = [];
  for (const b of BACKENDS) {
    const db = new Database(dbOf(b));
    try {
      const retriever = await Retriever.open(db);
      const rep = await evalQa(model, db.tokenizer, retriever, items, {
        variant: "rag",
        passages: "retrieve",
        topK: 2,
        system: null,
        maxTokens: 4,
        batch: 4,
      });
      reports.push({ name: b.name, rep });
    } finally {
      db.close();
    }
  }
  const base = reports[0].rep;
  for (const { name, rep } of reports.slice(1)) {
    const same = rep.predictions.filter(
      (p, i) => JSON.stringify(p.passages) === JSON.stringify(base.predictions[i].passages),
    ).length;
    assert.ok(same >= 7, `${name}: ${same} of 8 questions got the passages ${BACKENDS[0].name} gave`);
    // a question with other passages may answer otherwise: EM and F1 differ by at most its share
    const slack = (100 * (8 - same)) / 8;
    assert.ok(
      Math.abs(rep.exact_match - base.exact_match) <= slack,
      `${name}: EM ${rep.exact_match} vs ${base.exact_match}`,
    );
    assert.ok(Math.abs(rep.f1 - base.f1) <= slack, `${name}: F1 ${rep.f1} vs ${base.f1}`);
  }
});

for (const b of BACKENDS) {
  test(`${b.name}: an add that crashed before its manifest commit is never read; the next add appends exactly its rows`, async () => {
    const dir = dbOf(b);
    const notes = path.join(root, b.name, "notes");
    fs.mkdirSync(notes, { recursive: true });
    fs.writeFileSync(path.join(notes, "a.txt"), "Zorbulak the glassblower of Venturia lived on the moon. ".repeat(8));
    const size0 = readManifest(dir).index.size;
    await addDocuments(dir, { name: "crashed", source: "text", path: notes, weight: 0 }, { stopAfter: "staged" });
    const db0 = new Database(dir);
    try {
      const hits0 = await (await Retriever.open(db0)).searchText("Zorbulak glassblower Venturia", 5);
      assert.ok(
        hits0.every((h) => h.chunk < size0),
        "a row of the crashed add is visible",
      );
    } finally {
      db0.close();
    }
    const rep = await addDocuments(dir, { name: "notes", source: "text", path: notes, weight: 0 });
    assert.equal(readManifest(dir).index.size, size0 + rep.chunks, "exactly the committed add's rows");
    if (b.name === "lancedb") {
      // LanceDB numbered the added rows on from the restored version: its row ids are still the chunk ids
      const saved = JSON.parse(fs.readFileSync(path.join(dir, "index", "lancedb.json"), "utf8"));
      assert.equal(saved.rowIds, true);
    }
    const db1 = new Database(dir);
    try {
      const hits = await (await Retriever.open(db1)).searchText("Zorbulak glassblower Venturia", 5);
      assert.ok(
        hits.some((h) => h.dataset === "notes"),
        JSON.stringify(hits.map((h) => h.dataset)),
      );
      // the added rows answer under their own ids (after the crashed add's rows were dropped)
      for (const h of hits.filter((x) => x.dataset === "notes")) {
        assert.ok(h.chunk >= size0 && h.chunk < size0 + rep.chunks, `chunk ${h.chunk}`);
        assert.match(h.text, /Zorbulak/);
      }
    } finally {
      db1.close();
    }
  });
}

/** `retro db build` in another process, killed with SIGKILL after `ms` (asynchronous: PGlite answers from here) */
function buildKilledAfter(args: string[], ms: number): Promise<number | null> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(ROOT, "bin", "retro.js"), "db", "build", ...args], {
      env: { ...process.env, RETRO_QUIET: "1" },
      stdio: "ignore",
    });
    const t = setTimeout(() => p.kill("SIGKILL"), ms);
    p.on("exit", (code) => (clearTimeout(t), resolve(code)));
  });
}

for (const b of BACKENDS) {
  test(`${b.name}: a build killed at several moments and run again ends complete: every chunk indexed, recall as before`, async () => {
    const cfg = path.join(root, b.name, "killed.json");
    fs.writeFileSync(cfg, JSON.stringify({ ...config(b), embedBlockSize: 60 }));
    const dir = dbOf(b, "killed");
    for (const ms of [700, 1300, 1900, 2600]) await buildKilledAfter(["--out", dir, "--config", cfg], ms);
    assert.equal(await buildKilledAfter(["--out", dir, "--config", cfg], 600_000), 0);
    const m = readManifest(dir);
    assert.equal(m.index.size, m.chunks.count, "every chunk in the index");
    assert.ok(m.neighbours.train.samples > 0 && m.neighbours.valid);
    const recall = await retrieverRecallAt10(dir, [0, 97, 400, 811, 1203]);
    assert.ok(recall >= 0.9, `recall@10 ${recall}`);
  });
}

for (const b of BACKENDS) {
  test(`${b.name}: a store that is another database's (other dimension, other embedder) is refused, naming why`, async () => {
    // the other databases: the embedder at dimension 32, and the same dimension fitted on another corpus
    const narrow = dbOf(b, "narrow"),
      otherEmb = dbOf(b, "other-embedder");
    await buildDatabase(narrow, config(b, { embedder: { kind: "lexical", dim: 32 } }));
    await buildDatabase(otherEmb, config(b, {}, otherCorpus));
    const expectations: [string, RegExp][] = [
      [narrow, b.name === "usearch" ? /CRC|bytes|dimension/i : /dimension 32 from embedder lexical32-.*dimension 64/],
      [
        otherEmb,
        b.name === "usearch" ? /CRC|bytes/i : /from embedder lexical64-\w+; this database's index is .*lexical64-/,
      ],
    ];
    for (const [other, why] of expectations) {
      const copy = path.join(root, b.name, `swapped-${path.basename(other)}`);
      fs.cpSync(dbOf(b), copy, { recursive: true });
      b.swapStore(copy, other);
      const db = new Database(copy);
      try {
        await assert.rejects(
          () => db.openIndex(),
          (e: unknown) => {
            assert.ok(e instanceof RetroError, String(e));
            assert.match(e.message, why);
            return true;
          },
        );
      } finally {
        db.close();
      }
    }
  });
}
