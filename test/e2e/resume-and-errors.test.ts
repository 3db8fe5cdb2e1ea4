import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { resolveConfig } from "../../src/db/config.ts";
import { stageQuery } from "../../src/db/build.ts";
import type { RetroError } from "../../src/util/errors.ts";
import { LOCK_FILE, lockFolder } from "../../src/util/lock.ts";
import { readBlock, writeBlock } from "../../src/util/blockfile.ts";
import { cli, ROOT, smallConfig, tmpDir, treeHashes, writeTextCorpus } from "../helpers.ts";

process.env.RETRO_QUIET = "1";

function runUntilKilled(args: string[], afterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(ROOT, "bin", "retro.js"), ...args], {
      env: { ...process.env, RETRO_QUIET: "1" },
      stdio: "ignore",
    });
    const t = setTimeout(() => p.kill("SIGKILL"), afterMs);
    p.on("exit", () => (clearTimeout(t), resolve()));
  });
}

describe("kill and resume", () => {
  test("a build killed at several moments and re-run is byte-identical to an uninterrupted one", async () => {
    const corpus = writeTextCorpus(path.join(tmpDir(), "corpus"), 60, 2500);
    const cfgFile = path.join(tmpDir(), "cfg.json");
    fs.writeFileSync(
      cfgFile,
      JSON.stringify(
        smallConfig(corpus, { embedBlockSize: 40, query: { seq: 64, candidates: 50, keep: 4, blockSize: 4 } }),
      ),
    );
    const ref = path.join(tmpDir(), "ref");
    assert.equal(cli(["db", "build", "--out", ref, "--config", cfgFile]).code, 0);
    const dir = path.join(tmpDir(), "killed");
    for (const ms of [900, 1300, 1700, 2100, 2600])
      await runUntilKilled(["db", "build", "--out", dir, "--config", cfgFile], ms);
    const r = cli(["db", "build", "--out", dir, "--config", cfgFile]);
    assert.equal(r.code, 0, r.stderr);
    const a = treeHashes(ref),
      b = treeHashes(dir);
    assert.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
    // the manifest records the index build time, which differs between runs
    for (const k of Object.keys(a)) if (k !== "manifest.json") assert.equal(b[k], a[k], k);
  });
});

describe("bad input gives a clear error and exit code", () => {
  let corpus: string;
  before(() => {
    corpus = writeTextCorpus(path.join(tmpDir(), "corpus"), 12, 800);
  });

  test("missing corpus path → exit 3", () => {
    const r = cli(["db", "build", "--out", path.join(tmpDir(), "x"), "--text", "/no/such/folder"]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /path not found: \/no\/such\/folder/);
    assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, "no stack trace");
    // the failed attempt does not lock the folder to its config: the corrected command runs
    const out = path.join(tmpDir(), "y");
    assert.equal(cli(["db", "build", "--out", out, "--text", "/no/such/folder", "--until", "tokens"]).code, 3);
    const ok = cli(["db", "build", "--out", out, "--text", corpus, "--until", "tokens", "--tokenizer", "gpt2"]);
    assert.equal(ok.code, 0, ok.stderr);
  });

  test("a folder that is not a database (a training run) is refused and left untouched", () => {
    const run = tmpDir("run-");
    fs.writeFileSync(path.join(run, "config.json"), '{"db": "x"}');
    fs.writeFileSync(path.join(run, "tokenizer.json"), "{}");
    fs.writeFileSync(path.join(run, "model.tmp"), "partial");
    const before = treeHashes(run);
    const r = cli(["db", "build", "--out", run, "--text", corpus, "--until", "tokens"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /is not empty and is not a retro-ts database/);
    assert.deepEqual(treeHashes(run), before);
    assert.ok(fs.existsSync(path.join(run, "model.tmp")), "temp files of another tool are not cleaned up");
  });

  test("one writer per folder: a live writer's lock refuses a second, a dead writer's lock is taken over", () => {
    const dir = tmpDir("lock-");
    fs.writeFileSync(path.join(dir, LOCK_FILE), String(process.ppid)); // a live process (the test runner's parent)
    const r = cli(["db", "build", "--out", dir, "--text", corpus, "--until", "tokens"]);
    assert.equal(r.code, 7);
    assert.match(r.stderr, new RegExp(`is in use by process ${process.ppid} \\(retro db build\\)`));
    const run = cli(["train", "--db", dir, "--out", dir, "--steps", "1"]);
    assert.equal(run.code, 7);
    fs.writeFileSync(path.join(dir, LOCK_FILE), "999999999"); // no such process: stale
    const ok = cli(["db", "build", "--out", dir, "--text", corpus, "--until", "tokens", "--tokenizer", "gpt2"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(!fs.existsSync(path.join(dir, LOCK_FILE)), "released at the end");
    const release = lockFolder(dir, "test");
    assert.match(fs.readFileSync(path.join(dir, LOCK_FILE), "utf8"), new RegExp(`^${process.pid}@`), "PID@host");
    assert.throws(() => lockFolder(dir, "test"), /this process already writes it/);
    release();
    lockFolder(dir, "test")();
    // a lock held on another host cannot be checked from here: refused, naming it, never taken over
    fs.writeFileSync(path.join(dir, LOCK_FILE), "999999999@elsewhere.example");
    assert.throws(
      () => lockFolder(dir, "test"),
      (e: RetroError) => e.code === 7 && /locked by process 999999999 on host elsewhere\.example/.test(e.message),
    );
    fs.rmSync(path.join(dir, LOCK_FILE));
  });

  test("empty corpus → exit 4, nothing accepted later", () => {
    const empty = tmpDir();
    fs.writeFileSync(path.join(empty, "blank.txt"), "   \n");
    const out = path.join(tmpDir(), "db");
    const r = cli(["db", "build", "--out", out, "--text", empty, "--tokenizer", "gpt2"]);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /no documents/);
    assert.ok(!fs.existsSync(path.join(out, "manifest.json")));
    assert.throws(
      () => new Database(out),
      (e: RetroError) => e.code === 3,
    );
  });

  test("non-UTF-8 bytes → exit 4 naming the file", () => {
    const d = tmpDir();
    fs.writeFileSync(path.join(d, "bad.txt"), Buffer.from([0x48, 0x69, 0x20, 0xff, 0xfe, 0x21]));
    const r = cli(["db", "build", "--out", path.join(tmpDir(), "db"), "--text", d, "--tokenizer", "gpt2"]);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /bad\.txt: not valid UTF-8 \(first bad byte at offset 3\)/);
  });

  test("malformed JSONL line: fails by default (exit 4, line named), skipped and counted on request", async () => {
    const d = tmpDir();
    const f = path.join(d, "c.jsonl");
    const lines = fs
      .readdirSync(corpus)
      .map((n) => JSON.stringify({ text: fs.readFileSync(path.join(corpus, n), "utf8") }));
    lines.splice(3, 0, "{not json", JSON.stringify({ body: "no text field" }));
    fs.writeFileSync(f, lines.join("\n") + "\n");
    const r = cli([
      "db",
      "build",
      "--out",
      path.join(tmpDir(), "db"),
      "--jsonl",
      f,
      "--until",
      "tokens",
      "--tokenizer",
      "gpt2",
    ]);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /c\.jsonl:4: malformed JSONL line/);
    const out = path.join(tmpDir(), "db");
    const ok = cli([
      "db",
      "build",
      "--out",
      out,
      "--jsonl",
      f,
      "--skip-bad-lines",
      "--until",
      "tokens",
      "--tokenizer",
      "gpt2",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const man = JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8"));
    assert.equal(man.datasets[0].skippedLines, 2);
    assert.equal(man.datasets[0].trainDocs + man.datasets[0].validDocs, 12);
  });

  test("corrupt or truncated index, token and neighbour files → exit 5, and a rebuild repairs blocks", async () => {
    const dir = path.join(tmpDir(), "db");
    await buildDatabase(dir, smallConfig(corpus));
    // truncated token file
    const tok = path.join(dir, "tokens", "train.tok");
    const saved = fs.readFileSync(tok);
    fs.writeFileSync(tok, saved.subarray(0, saved.length - 2));
    let r = cli(["db", "stats", "--db", dir]);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /truncated or replaced/);
    // same size, other tokens (issue 10: 200 valid tokens written into valid.tok went unnoticed)
    const flipped = Buffer.from(saved);
    flipped[100] ^= 1;
    fs.writeFileSync(tok, flipped);
    r = cli(["db", "stats", "--db", dir]);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /train\.tok: SHA-256 differs from the manifest's/);
    fs.writeFileSync(tok, saved);
    // truncated index
    const idx = path.join(dir, "index", "index.usearch");
    const idxBuf = fs.readFileSync(idx);
    fs.writeFileSync(idx, idxBuf.subarray(0, 200));
    r = cli(["db", "inspect", "--db", dir, "--split", "valid"]);
    assert.equal(r.code, 0, "inspect reads precomputed neighbours only");
    r = cli(["db", "query", "--db", dir, "--split", "valid"]);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /index/);
    // issue 10's crashes: 64 bytes left, or 4 bytes flipped at offsets 0, 4 and deep inside — a clean exit 5, no signal
    for (const damage of [
      (b: Buffer) => b.subarray(0, 64),
      ...[0, 4, Math.floor(idxBuf.length / 2)].map((o) => (b: Buffer) => {
        const c = Buffer.from(b);
        for (let i = o; i < o + 4; i++) c[i] ^= 0xa5;
        return c;
      }),
    ]) {
      fs.writeFileSync(idx, damage(idxBuf));
      r = cli(["db", "query", "--db", dir, "--split", "valid"]);
      assert.equal(r.code, 5, r.stderr);
      assert.match(r.stderr, /damaged index/);
    }
    fs.writeFileSync(idx, idxBuf);
    // corrupt neighbour block
    const nd = path.join(dir, "neighbours", "valid");
    const f = path.join(nd, fs.readdirSync(nd)[0]);
    const b = fs.readFileSync(f);
    b[40] ^= 1;
    fs.writeFileSync(f, b);
    r = cli(["db", "inspect", "--db", dir, "--split", "valid"]);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /checksum mismatch/);
    r = cli(["db", "query", "--db", dir, "--split", "valid"]);
    assert.equal(r.code, 0, r.stderr);
    r = cli(["db", "inspect", "--db", dir, "--split", "train", "--sample", "0,1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /== train sample 0 [\s\S]*== train sample 1 /);
    assert.match(r.stdout, /\[0\] chunk \d+ \(moby, document \d+\): /);
    assert.equal(cli(["db", "inspect", "--db", dir, "--sample", "x"]).code, 2);
    // a well-formed block whose ids lie past the chunk table (issue 10: printed "chunk 2000000000 (undefined…)")
    const good = readBlock(f, Int32Array);
    const bad = good.data.slice();
    bad[3] = 2_000_000_000;
    writeBlock(f, bad, good.rows, good.cols);
    r = cli(["db", "inspect", "--db", dir, "--split", "valid"]);
    assert.equal(r.code, 5);
    assert.match(r.stderr, /neighbour id 2000000000 is not a chunk of the database/);
    writeBlock(f, good.data, good.rows, good.cols);
    // a finished database whose neighbour block was deleted: a re-run of the build recomputes it (not "ready" as is)
    fs.rmSync(f);
    const again = cli(["db", "build", "--out", dir, "--config", writeCfg(smallConfig(corpus))]);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(fs.existsSync(f), "the missing block is rebuilt");
    assert.deepEqual(readBlock(f, Int32Array).data, good.data);
  });

  function writeCfg(c: unknown): string {
    const p = path.join(tmpDir(), "cfg.json");
    fs.writeFileSync(p, JSON.stringify(c));
    return p;
  }

  test("an embedder whose dimension differs from the index → exit 6", async () => {
    const dir = path.join(tmpDir(), "db");
    await buildDatabase(dir, smallConfig(corpus), { until: "index" });
    // the database's config edited after the index was built
    const cfg = resolveConfig({ ...smallConfig(corpus), embedder: { kind: "lexical", dim: 32 } });
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(cfg));
    const db = new Database(dir);
    await assert.rejects(
      stageQuery(dir, cfg, db, "valid"),
      (e: RetroError) => e.code === 6 && /dimension 32 ≠ index dimension 64/.test(e.message),
    );
  });

  test("unknown config keys and bad values are refused by name", () => {
    assert.throws(() => resolveConfig({ chunkLen: 64 }), /unknown key "chunkLen"/);
    assert.throws(() => resolveConfig({ query: { seq: 100 } }), /multiple of chunkLength/);
    assert.throws(
      () => resolveConfig({ index: { description: "OPQ16_64,IVF4096,PQ16" } }),
      (e: RetroError) => e.code === 2 && /LanceDB has no OPQ rotation.*use "IVF4096,PQ16"/.test(e.message),
    );
    assert.throws(
      () => resolveConfig({ index: { description: "IVF65536_HNSW32,PQ64" } }),
      (e: RetroError) => e.code === 2 && /not HNSW; use "IVF65536,PQ64"/.test(e.message),
    );
    assert.throws(() => resolveConfig({ tokenizer: { kind: "wordpiece" } }), /not one of gpt2, bpe/);
    // a dataset entry: its keys, its required keys and each value checked by the datasets table
    const ds = { name: "a", source: "text", path: "x" };
    assert.throws(() => resolveConfig({ datasets: [{ ...ds, wieght: 0 }] }), /datasets\[0\]: unknown key "wieght"/);
    assert.throws(() => resolveConfig({ datasets: [{ name: "a", source: "text" }] }), /missing key "path"/);
    assert.throws(() => resolveConfig({ datasets: [{ ...ds, weight: -1 }] }), /datasets\[0\]\.weight must be/);
    assert.throws(() => resolveConfig({ datasets: [{ ...ds, source: "csv" }] }), /datasets\[0\]\.source must be/);
    assert.throws(() => resolveConfig({ datasets: [{ ...ds, onBadLine: "ignore" }] }), /onBadLine must be/);
    assert.throws(
      () => resolveConfig({ datasets: [ds, { ...ds, name: "b", weight: 0, validFraction: 0.5 }] }),
      /retrieval-only dataset \(weight 0\) holds nothing out/,
    );
    assert.equal(resolveConfig({ datasets: [ds, { ...ds, name: "b", weight: 0 }] }).datasets[1].weight, 0);
    const r = cli([
      "db",
      "build",
      "--out",
      path.join(tmpDir(), "db"),
      "--text",
      corpus,
      "--index",
      "OPQ16,IVF4096,PQ16",
      "--tokenizer",
      "gpt2",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /LanceDB has no OPQ rotation/);
  });
});
