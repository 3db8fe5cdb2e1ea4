/**
 * The LanceDB backend (IVF-PQ on disk) on the one SearchIndex interface: a database built with `IVF8,PQ8`
 * finds the exact nearest chunks (recall@10 against a brute-force search over the stored embeddings), its
 * neighbours feed training like any other index's, `db add` appends atomically (an add that crashed before its
 * manifest commit leaves no row visible, and the next add drops them), and Faiss forms LanceDB lacks are refused.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { addDocuments } from "../../src/db/add.ts";
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
  assert.equal(man.index.store, path.join(dir, "lance"));
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

test("db add on LanceDB: a crashed add leaves no row visible; the next add drops its rows and appends", async () => {
  const notes = path.join(root, "notes");
  fs.mkdirSync(notes);
  fs.writeFileSync(path.join(notes, "a.txt"), "Zorbulak the glassblower of Venturia lived on the moon. ".repeat(8));
  const size0 = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")).index.size;
  // a crash after the rows went into the table, before the journal: the manifest keeps the old version
  await addDocuments(dir, { name: "crashed", source: "text", path: notes, weight: 0 }, { stopAfter: "staged" });
  const db0 = new Database(dir);
  const r0 = await Retriever.open(db0); // opens the table at the manifest's version: the crashed rows are not there
  const hits0 = await r0.searchText("Zorbulak glassblower Venturia", 5);
  assert.ok(
    hits0.every((h) => h.chunk < size0),
    "a row of the crashed add is visible",
  );
  db0.close();
  const rep = await addDocuments(dir, { name: "notes", source: "text", path: notes, weight: 0 });
  const man = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  assert.equal(man.index.size, size0 + rep.chunks, "exactly the committed add's rows");
  const db1 = new Database(dir);
  const hits = await (await Retriever.open(db1)).searchText("Zorbulak glassblower Venturia", 5);
  assert.ok(
    hits.some((h) => h.dataset === "notes"),
    JSON.stringify(hits.map((h) => h.dataset)),
  );
  db1.close();
});
