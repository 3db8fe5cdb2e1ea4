/**
 * `retro db add`: documents added to a built database are retrieved at once (dense and BM25 indexes), nothing
 * else changes (the training items are the same), and a crash leaves the database before or after the update.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { Loader } from "../../src/train/loader.ts";
import { addDocuments } from "../../src/db/add.ts";
import { JOURNAL } from "../../src/db/journal.ts";
import { cli, smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

const FACT = "The zorblax harmonica of Quillmere was invented by Ottoline Vask in the winter of 1911.";
let root = "",
  corpus = "",
  news = "";

before(() => {
  root = tmpDir("retro-add-");
  corpus = writeTextCorpus(path.join(root, "corpus"), 30, 1200);
  news = path.join(root, "news");
  fs.mkdirSync(news);
  fs.writeFileSync(path.join(news, "a.txt"), `${FACT} ${FACT}\n`);
  fs.writeFileSync(
    path.join(news, "b.txt"),
    "A second note, about nothing in particular, written for the update test.\n",
  );
});

async function topOf(dir: string, query: string): Promise<{ dataset: string; text: string }> {
  const db = new Database(dir);
  try {
    const r = await Retriever.open(db);
    const res = await r.search([query], { keep: 1 });
    const c = r.citation(res.ids[0], res.scores[0]);
    return { dataset: c.dataset, text: c.text };
  } finally {
    db.close();
  }
}

for (const kind of ["dense", "bm25"] as const) {
  test(`db add (${kind}): a document only in the update is retrieved after it, training items unchanged`, async () => {
    const dir = path.join(root, `db-${kind}`);
    await buildDatabase(dir, smallConfig(corpus, kind === "bm25" ? { index: { description: "BM25" } } : {}));
    const query = "zorblax harmonica Quillmere Ottoline Vask";
    assert.notEqual((await topOf(dir, query)).dataset, "news");
    const db0 = new Database(dir);
    const items0 = new Loader(db0, { split: "train", seq: 64, batch: 2, seed: 1 });
    const first0 = items0.next().ids;
    const n0 = db0.nChunks;
    db0.close();
    const r = cli(["db", "add", "--db", dir, "--name", "news", "--text", news]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /interrupted/, "an ordinary add is not an interrupted one");
    const rep = JSON.parse(r.stdout) as { documents: number; chunks: number; totalChunks: number };
    assert.equal(rep.documents, 2);
    assert.equal(rep.totalChunks, n0 + rep.chunks);
    const top = await topOf(dir, query);
    assert.equal(top.dataset, "news");
    assert.match(top.text, /zorblax harmonica/);
    const db1 = new Database(dir); // the SHA-256s and ranges the manifest records hold
    assert.equal(db1.nChunks, n0 + rep.chunks);
    assert.equal(db1.manifest.datasets!.at(-1)!.weight, 0);
    const items1 = new Loader(db1, { split: "train", seq: 64, batch: 2, seed: 1 });
    assert.equal(items1.items, items0.items, "retrieval-only: no new training items");
    assert.deepEqual(items1.next().ids, first0);
    db1.close();
    assert.equal(cli(["db", "stats", "--db", dir]).code, 0);
    const again = cli(["db", "add", "--db", dir, "--name", "news", "--text", news]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already has a dataset named "news"/);
  });
}

test("db add is atomic: a crash before the journal leaves the database as it was, after it the update completes", async () => {
  const base = path.join(root, "db-crash");
  await buildDatabase(base, smallConfig(corpus));
  const man0 = fs.readFileSync(path.join(base, "manifest.json"), "utf8");
  // crash with every file staged but no journal: nothing changed
  const a = path.join(root, "crash-a");
  fs.cpSync(base, a, { recursive: true });
  await addDocuments(a, { name: "news", source: "text", path: news, weight: 0 }, { stopAfter: "staged" });
  assert.equal(fs.readFileSync(path.join(a, "manifest.json"), "utf8"), man0);
  const da = new Database(a);
  assert.equal(da.manifest.datasets!.length, 1);
  da.close();
  // the next add sweeps the staging files and applies its own update
  await addDocuments(a, { name: "news", source: "text", path: news, weight: 0 });
  assert.equal((await topOf(a, "zorblax harmonica Quillmere")).dataset, "news");
  assert.deepEqual(
    fs.readdirSync(path.join(a, "tokens")).filter((f) => f.endsWith(".update")),
    [],
  );
  // crash right after the journal: the next open rolls it forward
  const b = path.join(root, "crash-b");
  fs.cpSync(base, b, { recursive: true });
  await addDocuments(b, { name: "news", source: "text", path: news, weight: 0 }, { stopAfter: "journal" });
  assert.ok(fs.existsSync(path.join(b, JOURNAL)));
  const db = new Database(b);
  assert.equal(db.manifest.datasets!.at(-1)!.name, "news");
  db.close();
  assert.ok(!fs.existsSync(path.join(b, JOURNAL)));
  assert.equal((await topOf(b, "zorblax harmonica Quillmere")).dataset, "news");
});
