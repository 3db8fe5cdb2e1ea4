// Sharded neighbour search: `retro db query --shard i/n` in three processes at once, then `--merge 3`, gives the
// same neighbour files and the same manifest entry, byte for byte, as one process; a missing shard is named.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { buildDatabase } from "../../src/db/build.ts";
import { cli, ROOT, smallConfig, tmpDir, treeHashes, writeTextCorpus } from "../helpers.ts";

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [path.join(ROOT, "bin", "retro.js"), ...args], {
      env: { ...process.env, RETRO_QUIET: "1" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    p.stderr!.on("data", (d) => (err += d));
    p.on("exit", (code) => res({ code, stderr: err }));
  });
}

test("three shards + merge = one process, byte for byte; a missing shard is named", async () => {
  const root = tmpDir("retro-shard-");
  process.env.RETRO_QUIET = "1";
  const cfg = smallConfig(writeTextCorpus(path.join(root, "corpus"), 30, 1500), {
    query: { seq: 64, candidates: 50, keep: 4, blockSize: 4 },
  });
  const whole = path.join(root, "whole");
  await buildDatabase(whole, cfg);
  const sharded = path.join(root, "sharded");
  await buildDatabase(sharded, cfg, { until: "index" });
  // the merge refuses while a shard has not run
  const r0 = await run(["db", "query", "--db", sharded, "--split", "train", "--shard", "0/3"]);
  assert.equal(r0.code, 0, r0.stderr);
  const early = cli(["db", "query", "--db", sharded, "--split", "train", "--merge", "3"]);
  assert.equal(early.code, 4, early.stderr);
  assert.match(early.stderr, /neighbour blocks missing .*shards 1\/3, 2\/3 have not finished/);
  // the other two at once, then the merge; the valid split the same way
  const rs = await Promise.all(
    ["1/3", "2/3"].map((s) => run(["db", "query", "--db", sharded, "--split", "train", "--shard", s])),
  );
  for (const r of rs) assert.equal(r.code, 0, r.stderr);
  assert.equal(cli(["db", "query", "--db", sharded, "--split", "train", "--merge", "3"]).code, 0);
  for (const s of ["0/2", "1/2"])
    assert.equal((await run(["db", "query", "--db", sharded, "--split", "valid", "--shard", s])).code, 0);
  assert.equal(cli(["db", "query", "--db", sharded, "--split", "valid", "--merge", "2"]).code, 0);
  const a = treeHashes(path.join(whole, "neighbours")),
    b = treeHashes(path.join(sharded, "neighbours"));
  assert.ok(Object.keys(a).length > 6, `${Object.keys(a).length} neighbour blocks`);
  assert.deepEqual(b, a);
  const man = (d: string) => JSON.parse(fs.readFileSync(path.join(d, "manifest.json"), "utf8")).neighbours;
  assert.deepEqual(man(sharded), man(whole));
  // the sharded database trains and evaluates like the other (its blocks are read by the loader)
  assert.equal(cli(["db", "stats", "--db", sharded]).code, 0);
  assert.equal(cli(["db", "query", "--db", sharded, "--shard", "3/3"]).code, 2);
});
