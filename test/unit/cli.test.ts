/** The `retro` program itself: its version, and a usage error for an unknown command. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { cli, ROOT } from "../helpers.ts";

test("retro --version prints the package's version; an unknown command is a usage error", () => {
  const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
  const r = cli(["--version"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), version);
  assert.equal(cli(["-V"]).stdout.trim(), version);
  assert.equal(cli(["no-such-command"]).code, 2);
});

test("a dataset flag's PATH:WEIGHT: only a trailing number is a weight, a bad one is a usage error", async () => {
  const { withWeight } = await import("../../src/cli/db.ts");
  assert.deepEqual(withWeight("--jsonl", "data/twins.jsonl:0"), { path: "data/twins.jsonl", weight: 0 });
  assert.deepEqual(withWeight("--corpus", "web:0.5"), { path: "web", weight: 0.5 });
  assert.deepEqual(withWeight("--jsonl", "data/docs.jsonl"), { path: "data/docs.jsonl", weight: 1 });
  // a colon inside the path, or a suffix that is not a number, stays part of the path
  assert.deepEqual(withWeight("--text", "a:b/c.txt"), { path: "a:b/c.txt", weight: 1 });
  assert.deepEqual(withWeight("--text", "notes:draft"), { path: "notes:draft", weight: 1 });
  assert.throws(() => withWeight("--jsonl", "x.jsonl:-1"), /weight after ":" must be a number ≥ 0/);
  assert.throws(() => withWeight("--jsonl", "x.jsonl:1e999"), /must be a number ≥ 0/);
});

test("retro db build has a flag for every row of the database's settings tables, each range-checked", async () => {
  const { DB_SETTINGS, QUERY_SETTINGS } = await import("../../src/db/config.ts");
  const { INDEX_SETTINGS } = await import("../../src/search/settings.ts");
  const { flagOf } = await import("../../src/util/settings.ts");
  const help = cli(["db", "build", "--help"]).stdout;
  for (const table of [DB_SETTINGS, QUERY_SETTINGS, INDEX_SETTINGS])
    for (const [key, s] of Object.entries(table)) assert.match(help, new RegExp(`--${flagOf(key, s)} `), key);
  const r = cli(["db", "build", "--out", "/tmp/never-made-db", "--keep", "0"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--keep/);
  assert.ok(!fs.existsSync("/tmp/never-made-db"));
});
