/**
 * The Postgres / pgvector backend against a real Postgres engine started here: PGlite (Postgres compiled to
 * WebAssembly) with its vector extension, behind pglite-socket — the Postgres wire protocol on a loopback port,
 * so the code under test is the one any Postgres with pgvector gets. A database built with
 * `--store postgres://…` finds the exact nearest chunks (HNSW, recall@10 against brute force), its CLI commands
 * work in other processes, and `db add` keeps its promise: a crashed add's rows are never read.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { addDocuments } from "../../src/db/add.ts";
import type { PGlite } from "@electric-sql/pglite";
import { cliAsync, retrieverRecallAt10, smallConfig, startPgvector, tmpDir, writeTextCorpus } from "../helpers.ts";

let stopPg: () => Promise<void>, pg: PGlite;
let url = "",
  root = "",
  dir = "";

before(async () => {
  ({ url, pg, stop: stopPg } = await startPgvector());
  root = tmpDir("retro-pg-");
  dir = path.join(root, "db");
  process.env.RETRO_QUIET = "1";
  await buildDatabase(
    dir,
    smallConfig(writeTextCorpus(path.join(root, "corpus"), 20, 1500), {
      index: { description: "HNSW16", store: url, efConstruction: 64, efSearch: 64, threads: 1 },
      query: { seq: 64, candidates: 20, keep: 4, blockSize: 8 },
    }),
  );
});

after(() => stopPg());

test("HNSW16 in Postgres: the manifest names the store (no password), recall@10 ≥ 0.9, CLI search", async () => {
  const man = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  assert.equal(man.index.store, url);
  assert.match(man.index.table, /^retro_[0-9a-f]{16}$/);
  const rows = await pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${man.index.table}`);
  assert.equal(rows.rows[0].n, man.index.size);
  const recall = await retrieverRecallAt10(dir, [0, 51, 230, 480]);
  assert.ok(recall >= 0.9, `recall@10 ${recall}`);
  assert.ok(man.neighbours.train.samples > 0);
  // another process (asynchronously: the Postgres engine answers from this one)
  const s = await cliAsync(["db", "search", "--db", dir, "--k", "3", "--json", "the whale"]);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout.trim().split("\n").length, 3);
});

test("db add on Postgres: a crashed add's rows are never read; the next add deletes them and appends", async () => {
  const notes = path.join(root, "notes");
  fs.mkdirSync(notes);
  fs.writeFileSync(path.join(notes, "a.txt"), "Zorbulak the glassblower of Venturia lived on the moon. ".repeat(8));
  const man0 = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  await addDocuments(dir, { name: "crashed", source: "text", path: notes, weight: 0 }, { stopAfter: "staged" });
  const inTable = await pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${man0.index.table}`);
  assert.ok(inTable.rows[0].n > man0.index.size, "the crashed add wrote rows");
  const db0 = new Database(dir);
  const hits0 = await (await Retriever.open(db0)).searchText("Zorbulak glassblower Venturia", 5);
  assert.ok(
    hits0.every((h) => h.chunk < man0.index.size),
    "a crashed add's row was read",
  );
  db0.close();
  const rep = await addDocuments(dir, { name: "notes", source: "text", path: notes, weight: 0 });
  const man = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  assert.equal(man.index.size, man0.index.size + rep.chunks);
  const after = await pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${man.index.table}`);
  assert.equal(after.rows[0].n, man.index.size, "exactly the committed rows");
  const db1 = new Database(dir);
  const hits = await (await Retriever.open(db1)).searchText("Zorbulak glassblower Venturia", 5);
  assert.ok(hits.some((h) => h.dataset === "notes"));
  db1.close();
});
