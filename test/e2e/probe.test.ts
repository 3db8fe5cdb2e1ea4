/**
 * The fault probe's findings (issue 24, items 7–14), each reproduced as the probe found it and held to the fixed
 * behaviour: another account's database, folders that are not ours, integrity keys that are missing, races,
 * resume state, staging leftovers, lenient QA data and out-of-range values.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { buildDatabase } from "../../src/db/build.ts";
import { train } from "../../src/train/trainer.ts";
import { resolveCheckpointDir } from "../../src/model/checkpoint.ts";
import { cli, ROOT, smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

let root = "",
  db = "",
  run = "";
const MODEL = { model: "gpt", d: 32, heads: 4, layers: 2, seq: 64, r: 32 };
before(async () => {
  root = tmpDir("retro-probe-");
  db = path.join(root, "db");
  process.env.RETRO_QUIET = "1";
  await buildDatabase(db, smallConfig(writeTextCorpus(path.join(root, "corpus"), 30, 1200)));
  run = path.join(root, "gpt");
  await train(run, { db, model: MODEL, steps: 2, batch: 2, evalEvery: 1e9, saveEvery: 1e9, evalBatches: 1 });
});

/** a copy of the fixture database to damage */
function dbCopy(name: string): string {
  const d = path.join(root, name);
  fs.cpSync(db, d, { recursive: true });
  return d;
}

/** a safetensors file rewritten with its metadata changed by `edit` (data bytes unchanged) */
function editMetadata(file: string, edit: (m: Record<string, string>) => void): void {
  const buf = fs.readFileSync(file);
  const hlen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + hlen).toString("utf8")) as Record<string, unknown>;
  edit(header.__metadata__ as Record<string, string>);
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8) json += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), buf.subarray(8 + hlen)]));
}

const canSwitchUser = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

test("7: a database owned by another account is read (not 'corrupt')", {
  skip: canSwitchUser ? false : "needs root and setpriv to run as another user",
}, () => {
  const shared = dbCopy("shared-db");
  spawnSync("chmod", ["-R", "a+rX", root]);
  const asNobody = (args: string[]) =>
    spawnSync(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "bin/retro.js", ...args],
      {
        cwd: ROOT,
        encoding: "utf8",
        env: { ...process.env, RETRO_QUIET: "1", HOME: "/tmp" },
      },
    );
  const r = asNobody(["db", "search", "--db", shared, "--k", "2", "--json", "whale"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim().split("\n").length, 2);
});

test("7: the advice for a damaged index works: delete it, run db build --out DB, search again", () => {
  const d = dbCopy("rebuilt-db");
  const before = cli(["db", "search", "--db", d, "--k", "3", "--json", "the whale"]).stdout;
  fs.rmSync(path.join(d, "index", "index.usearch"));
  const b = cli(["db", "build", "--out", d]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(cli(["db", "search", "--db", d, "--k", "3", "--json", "the whale"]).stdout, before);
});

test("8: folders that are not ours are never written into", () => {
  const mine = path.join(root, "my-notes");
  fs.mkdirSync(mine);
  fs.writeFileSync(path.join(mine, "README.md"), "my own notes\n");
  for (const args of [
    ["sft-data", "--db", db, "--out", mine],
    ["corpus", "people", "--out", mine],
  ]) {
    const r = cli(args);
    assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
    assert.match(r.stderr, /is not empty and was not written by/);
  }
  assert.equal(fs.readFileSync(path.join(mine, "README.md"), "utf8"), "my own notes\n");
  assert.deepEqual(fs.readdirSync(mine), ["README.md"]);
  // a web project's folder with a manifest.json and a .tmp file of its own
  const web = path.join(root, "web-app");
  fs.mkdirSync(web);
  fs.writeFileSync(path.join(web, "manifest.json"), '{"name": "my app", "icons": []}');
  fs.writeFileSync(path.join(web, "upload.tmp"), "half an upload");
  const r = cli(["db", "build", "--out", web, "--text", path.join(root, "corpus")]);
  assert.equal(r.code, 2, r.stderr);
  assert.deepEqual(fs.readdirSync(web).sort(), ["manifest.json", "upload.tmp"]);
  // an empty folder, or one this command wrote, is fine
  const fresh = path.join(root, "people");
  assert.equal(cli(["corpus", "people", "--out", fresh, "--a", "3", "--b", "3", "--c", "3"]).code, 0);
  assert.equal(
    cli(["corpus", "people", "--out", fresh, "--a", "3", "--b", "3", "--c", "3"]).code,
    0,
    "a re-run into its own folder",
  );
});

test("9: an index with no recorded checksum and a damaged header is refused (exit 5), not a segfault", () => {
  const d = dbCopy("unchecked-db");
  const mf = path.join(d, "manifest.json");
  const man = JSON.parse(fs.readFileSync(mf, "utf8"));
  delete man.index.bytes;
  delete man.index.crc32;
  fs.writeFileSync(mf, JSON.stringify(man));
  assert.equal(cli(["db", "search", "--db", d, "whale"]).code, 0, "an intact pre-checksum index still opens");
  const f = path.join(d, "index", "index.usearch");
  const bytes = fs.readFileSync(f);
  for (let i = 0; i < 64; i++) bytes[i] ^= 0xa5;
  fs.writeFileSync(f, bytes);
  const r = cli(["db", "search", "--db", d, "whale"]);
  assert.equal(r.code, 5, `exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /does not load|cannot load/);
});

test("9: a retro-ts checkpoint without its checksum is refused; one without a tokenizer id is loaded with a warning", () => {
  const copy = path.join(root, "ckpt-copy");
  fs.cpSync(resolveCheckpointDir(run), copy, { recursive: true });
  const weights = path.join(copy, "model.safetensors");
  editMetadata(weights, (m) => delete m.tokenizer);
  let r = cli(["eval", "ppl", "--ckpt", copy, "--db", db, "--batches", "1"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /records no tokenizer id .* not checked/);
  editMetadata(weights, (m) => delete m.retro_ts_crc32);
  r = cli(["eval", "ppl", "--ckpt", copy, "--db", db, "--batches", "1"]);
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stderr, /without its data checksum/);
  const allowed = spawnSync(
    process.execPath,
    ["bin/retro.js", "eval", "ppl", "--ckpt", copy, "--db", db, "--batches", "1"],
    {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, RETRO_QUIET: "1", RETRO_ALLOW_UNCHECKED: "1" },
    },
  );
  assert.equal(allowed.status, 0, allowed.stderr);
});
