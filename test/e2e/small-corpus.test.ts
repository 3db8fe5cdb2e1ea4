// A newcomer's own notes: three short text files. The database builds with the defaults, `retro db search`
// finds the file that holds the query's words (dense LSA and BM25), and training says what to change.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { cli, tmpDir } from "../helpers.ts";

const NOTES: Record<string, string> = {
  "bees.txt":
    "How do bees make honey? Worker bees collect nectar from flowers and carry it back to the hive. " +
    "In the hive they pass the nectar from bee to bee, adding enzymes, and store it in wax cells. " +
    "They fan it with their wings until most of the water evaporates, then seal the honey with wax.",
  "maps.txt":
    "The Mercator projection draws the globe on a cylinder, so that lines of constant compass bearing are " +
    "straight. It keeps angles but stretches areas near the poles: Greenland looks as large as Africa. " +
    "Sailors used it for navigation because a course could be drawn with a ruler.",
  "glass.txt":
    "Glassblowing starts with a gather of molten glass on the end of a blowpipe. The glassblower turns the " +
    "pipe, blows a bubble, and shapes it with wooden blocks, jacks and wet newspaper. The piece is reheated " +
    "in the glory hole and finally cooled slowly in an annealing oven.",
};

let root = "";
before(() => {
  root = tmpDir("notes-");
  fs.mkdirSync(path.join(root, "notes"));
  for (const [f, t] of Object.entries(NOTES)) fs.writeFileSync(path.join(root, "notes", f), t);
});

function top(db: string, query: string, extra: string[] = []): { document: number; text: string }[] {
  const r = cli(["db", "search", "--db", db, "--k", "3", "--json", ...extra, query]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { document: number; text: string });
}

const QUERIES: [string, RegExp][] = [
  ["how do bees make honey", /nectar|honey/],
  ["Mercator projection", /Mercator|Greenland|cylinder|navigation/],
  ["annealing oven blowpipe", /glass|blowpipe|annealing/],
];

for (const index of ["HNSW32,SQfp16", "BM25"]) {
  test(`three short files (${index}): db search ranks the file with the query's words first`, () => {
    const db = path.join(root, `db-${index.replace(/\W/g, "")}`);
    const b = cli(["db", "build", "--out", db, "--text", path.join(root, "notes"), "--index", index]);
    assert.equal(b.code, 0, b.stderr);
    for (const [q, want] of QUERIES) {
      const hits = top(db, q);
      assert.ok(hits.length >= 1, `${q}: no hit`);
      assert.match(hits[0].text, want, `${q}: first hit is ${JSON.stringify(hits[0].text.slice(0, 80))}`);
    }
    // the text form: rank, score, dataset, document, chunk, then the text
    const plain = cli(["db", "search", "--db", db, "--k", "1", "bees", "honey"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^#1 {2}score -?\d+\.\d{4} {2}\S+ document \d+ {2}chunk \d+\n {2}.*(nectar|honey)/);
  });
}

test("BM25 over a dense database (--bm25) and a clear error on a database that is not there", () => {
  const db = path.join(root, "db-HNSW32SQfp16");
  assert.match(top(db, "how do bees make honey", ["--bm25"])[0].text, /nectar|honey/);
  const r = cli(["db", "search", "--db", path.join(root, "nope"), "anything"]);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /database not found/);
});

test("training on it: the error names the fixes; --eval-batches 0 trains without a held-out split", () => {
  const db = path.join(root, "db-HNSW32SQfp16");
  const model = ["--model", "gpt", "--d", "16", "--heads", "2", "--layers", "1", "--seq", "64", "--batch", "1"];
  let r = cli(["train", "--db", db, "--out", path.join(root, "run"), ...model, "--steps", "2"]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /holds no complete sample.*--valid-fraction.*--seq/s);
  // shorter samples: the train split now holds some; with no evaluation the held-out split is not needed
  const small = path.join(root, "db-small");
  const b = cli(["db", "build", "--out", small, "--text", path.join(root, "notes"), "--seq", "64"]);
  assert.equal(b.code, 0, b.stderr);
  r = cli(["train", "--db", small, "--out", path.join(root, "run2"), ...model, "--steps", "2", "--eval-batches", "0"]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { step: number; eval: unknown };
  assert.equal(out.step, 2);
  assert.equal(out.eval, null, "--eval-batches 0: no evaluation");
});
