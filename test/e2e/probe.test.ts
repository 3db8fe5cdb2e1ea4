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
import { createRequire } from "node:module";
import { buildDatabase } from "../../src/db/build.ts";
import { train } from "../../src/train/trainer.ts";
import { resolveCheckpointDir } from "../../src/model/checkpoint.ts";
import { cli, ROOT, smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

const require = createRequire(import.meta.url);
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

/** run a command in the background; resolves with its exit code and stderr */
function spawnCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  const { spawn } = require("node:child_process") as typeof import("node:child_process");
  return new Promise((res) => {
    const p = spawn(process.execPath, [path.join(ROOT, "bin", "retro.js"), ...args], {
      env: { ...process.env, RETRO_QUIET: "1", ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    p.stderr!.on("data", (d) => (err += d));
    p.on("exit", (code) => res({ code, stderr: err }));
  });
}

test("10: three processes finding one stale lock: exactly one holds it at a time (8 rounds)", async () => {
  const { spawn } = await import("node:child_process");
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  const script = path.join(root, "hold-lock.ts");
  fs.writeFileSync(
    script,
    `import * as fs from "node:fs";
import { lockFolder } from ${JSON.stringify(path.join(ROOT, "src/util/lock.ts"))};
const [dir, log, at] = process.argv.slice(2);
while (Date.now() < Number(at)) {}
let release = null;
try { release = lockFolder(dir, "probe"); } catch { process.exit(0); }
const t0 = performance.timeOrigin + performance.now();
const until = Date.now() + 150; while (Date.now() < until) {}
fs.appendFileSync(log, JSON.stringify([t0, performance.timeOrigin + performance.now()]) + "\\n");
release();
`,
  );
  for (let round = 0; round < 8; round++) {
    const dir = path.join(root, `lock-${round}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, ".lock"), `${dead.stdout}@${(await import("node:os")).hostname()}`);
    const at = Date.now() + 1200; // a start barrier: the three find the stale lock at the same instant
    const log = path.join(dir, "held.jsonl");
    fs.writeFileSync(log, "");
    await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise((res) =>
            spawn(process.execPath, ["--import", "tsx", script, dir, log, String(at)], {
              cwd: ROOT,
              stdio: "ignore",
            }).on("exit", res),
          ),
      ),
    );
    const spans = fs
      .readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as [number, number])
      .sort((a, b) => a[0] - b[0]);
    assert.ok(spans.length >= 1, `round ${round}: nobody took the stale lock`);
    for (let i = 1; i < spans.length; i++)
      assert.ok(spans[i][0] >= spans[i - 1][1], `round ${round}: two holders at once ${JSON.stringify(spans)}`);
  }
});

/** a process that opens the database at time `at` (ms since the epoch): exit 0, or the error on stderr */
async function openAt(d: string, at: number): Promise<{ code: number | null; stderr: string }> {
  const { spawn } = await import("node:child_process");
  const script = path.join(root, "open-at.ts");
  if (!fs.existsSync(script))
    fs.writeFileSync(
      script,
      `import { Database } from ${JSON.stringify(path.join(ROOT, "src/db/database.ts"))};
const [dir, at] = process.argv.slice(2);
while (Date.now() < Number(at)) {}
try { new Database(dir).close(); } catch (e) { console.error(String(e)); process.exit(1); }
`,
    );
  return new Promise((res) => {
    const p = spawn(process.execPath, ["--import", "tsx", script, d, String(at)], {
      cwd: ROOT,
      env: { ...process.env, RETRO_QUIET: "1" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    p.stderr!.on("data", (x) => (err += x));
    p.on("exit", (code) => res({ code, stderr: err }));
  });
}

test("10: three readers meeting a crashed db add: one rolls it forward under the lock, none fails", async () => {
  const { addDocuments } = await import("../../src/db/add.ts");
  const notes = path.join(root, "notes10");
  fs.mkdirSync(notes);
  fs.writeFileSync(path.join(notes, "n.txt"), "Queequeg sharpened his harpoon on the deck of the Pequod. ".repeat(20));
  for (let round = 0; round < 3; round++) {
    const d = dbCopy(`crashed-${round}`);
    await addDocuments(d, { name: "notes", source: "text", path: notes, weight: 0 }, { stopAfter: "journal" });
    assert.ok(fs.existsSync(path.join(d, "update.journal.json")));
    // three readers released at the same instant (a start barrier), as the probe's concurrent commands met it
    const at = Date.now() + 1500;
    const rs = await Promise.all([0, 1, 2].map(() => openAt(d, at)));
    for (const r of rs) assert.equal(r.code, 0, `round ${round}: ${r.stderr}`);
    assert.ok(!fs.existsSync(path.join(d, "update.journal.json")));
    assert.match(cli(["db", "stats", "--db", d]).stdout, /notes/);
  }
});

test("10: readers opening during live db adds never see a false 'corrupt'", async () => {
  const { Database } = await import("../../src/db/database.ts");
  const d = dbCopy("live-db");
  const notes = path.join(root, "notes-live");
  fs.mkdirSync(notes);
  for (let i = 0; i < 4; i++)
    fs.writeFileSync(path.join(notes, `n${i}.txt`), `Starbuck counted the casks ${i}. `.repeat(40));
  let opened = 0;
  for (let round = 0; round < 4; round++) {
    // the add in another process; this process opens the database over and over meanwhile (a few ms each)
    const add = spawnCli(["db", "add", "--db", d, "--name", `live${round}`, "--text", notes]);
    let done = false;
    void add.then(() => (done = true));
    while (!done) {
      try {
        new Database(d).close();
        opened++;
      } catch (e) {
        const kind = (e as { kind?: string }).kind;
        assert.ok(kind === "busy", `round ${round}: a reader failed: ${(e as Error).message}`);
      }
      await new Promise((r) => setImmediate(r));
    }
    const a = await add;
    assert.equal(a.code, 0, a.stderr);
  }
  assert.ok(opened > 20, `only ${opened} opens`);
});

test("11: a resume trusts no state.json that contradicts its checkpoint", () => {
  const cases: [string, (s: Record<string, unknown>) => void, RegExp][] = [
    ["pos not a number", (s) => (s.pos = "abc"), /"pos" "abc" is not a data position/],
    ["pos far ahead", (s) => (s.pos = 99999999), /"pos" 99999999 is not the \d+ items/],
    ["step of another folder", (s) => (s.step = 1), /step 1 in a checkpoint folder of step 2/],
    ["negative seconds", (s) => (s.seconds = -5), /"seconds" -5 is not a count/],
  ];
  for (const [name, edit, msg] of cases) {
    const copy = path.join(root, `state-${name.replace(/\W/g, "")}`);
    fs.cpSync(run, copy, { recursive: true });
    const f = path.join(resolveCheckpointDir(copy), "state.json");
    const st = JSON.parse(fs.readFileSync(f, "utf8"));
    edit(st);
    fs.writeFileSync(f, JSON.stringify(st));
    const r = cli(["train", "--out", copy, "--resume"]);
    assert.equal(r.code, 5, `${name}: ${r.stderr}`);
    assert.match(r.stderr, msg, name);
  }
});

test("12: staging temp files of a killed db add are swept by the next add", () => {
  const d = dbCopy("swept-db");
  const junk = [path.join(d, "tokens", "train.tok.update.4242.0.tmp"), path.join(d, "chunks.blk.update.4242.1.tmp")];
  for (const j of junk) fs.writeFileSync(j, Buffer.alloc(4096));
  const notes = path.join(root, "notes12");
  fs.mkdirSync(notes);
  fs.writeFileSync(path.join(notes, "a.txt"), "Ahab paced the quarterdeck. ".repeat(10));
  const r = cli(["db", "add", "--db", d, "--name", "notes", "--text", notes]);
  assert.equal(r.code, 0, r.stderr);
  for (const j of junk) assert.ok(!fs.existsSync(j), `${j} left behind`);
});

const canMount =
  process.getuid?.() === 0 &&
  (() => {
    const dir = fs.mkdtempSync("/tmp/retro-mnt-");
    const ok = spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]).status === 0;
    if (ok) spawnSync("umount", [dir]);
    fs.rmdirSync(dir);
    return ok;
  })();

test("12: a full disk while the index is written is an io error (exit 8); freeing space and re-running finishes", {
  skip: canMount ? false : "needs root to mount a small tmpfs",
}, () => {
  const mnt = fs.mkdtempSync("/tmp/retro-full-");
  assert.equal(spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt]).status, 0);
  try {
    const d = path.join(mnt, "db");
    fs.cpSync(db, d, { recursive: true });
    fs.rmSync(path.join(d, "index", "index.usearch"));
    // fill the device but for a few KiB (the index needs more)
    const used = Number(spawnSync("du", ["-sk", mnt], { encoding: "utf8" }).stdout.split("\t")[0]);
    fs.writeFileSync(path.join(mnt, "fill"), Buffer.alloc((8192 - used - 12) * 1024));
    const r = cli(["db", "build", "--out", d]);
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, /index could not be written .* free on its device/);
    fs.rmSync(path.join(mnt, "fill"));
    const again = cli(["db", "build", "--out", d]);
    assert.equal(again.code, 0, again.stderr);
  } finally {
    spawnSync("umount", [mnt]);
    fs.rmdirSync(mnt);
  }
});

test("13: lenient QA and instruction data is refused, named", () => {
  const f = (name: string, content: string | Buffer) => {
    const p = path.join(root, name);
    fs.writeFileSync(p, content);
    return p;
  };
  const squad = f(
    "no-text.json",
    JSON.stringify({
      data: [
        {
          title: "t",
          paragraphs: [{ context: "c", qas: [{ id: "q1", question: "who?", answers: [{ answer_start: 0 }] }] }],
        },
      ],
    }),
  );
  let r = cli(["eval", "score", "--predictions", f("p.jsonl", '{"id": "q1", "prediction": ""}\n'), "--gold", squad]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /no-text\.json .*qas\[0\]: answer 0 has no "text"/);
  const empty = f("empty.json", "[]");
  r = cli(["eval", "qa", "--ckpt", run, "--data", empty, "--max-tokens", "2"]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /no questions/);
  const qa = f("qa.jsonl", '{"question": "Who is Ahab?", "answers": ["a captain"]}\n');
  r = cli(["eval", "qa", "--ckpt", run, "--ckpt", run, "--data", qa, "--max-tokens", "2"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /two checkpoints labelled "gpt"/);
  // invalid UTF-8 (a Latin-1 é) is named with its line, never replaced silently
  const latin1 = Buffer.concat([
    Buffer.from('{"prompt": "ok"}\n{"prompt": "caf'),
    Buffer.from([0xe9]),
    Buffer.from('"}\n'),
  ]);
  r = cli(["generate", "--ckpt", run, "--prompts", f("bad-utf8.jsonl", latin1), "--max-tokens", "2"]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /bad-utf8\.jsonl:2: not valid UTF-8/);
  const chat = (a: string) =>
    JSON.stringify({
      messages: [
        { role: "user", content: "q" },
        { role: "assistant", content: a },
      ],
    });
  const chatBad = Buffer.concat([Buffer.from(`${chat("yes")}\n`), Buffer.from([0xff, 0x0a])]);
  r = cli([
    "sft",
    "--init",
    run,
    "--out",
    path.join(root, "sft-bad"),
    "--data",
    f("chat-bad.jsonl", chatBad),
    "--steps",
    "1",
  ]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /chat-bad\.jsonl:2: not valid UTF-8/);
  r = cli(["eval", "qa", "--ckpt", run, "--data", f("qa-bad.jsonl", latin1), "--max-tokens", "2"]);
  assert.equal(r.code, 4, r.stderr);
  const blank = f("blank-answers.jsonl", `${chat("")}\n${chat(" ")}\n`);
  r = cli(["sft", "--init", run, "--out", path.join(root, "sft-blank"), "--data", blank, "--steps", "1"]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /every answer is empty/);
});

test("14: out-of-range values: a huge batch, a NaN weight, a neighbour block of another shape, dataset names", async () => {
  const small = ["--model", "gpt", "--d", "16", "--heads", "2", "--layers", "1", "--seq", "64"];
  let r = cli(["train", "--db", db, "--out", path.join(root, "huge"), ...small, "--batch", "100000000"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /lower --batch|smaller model, batch/);
  // a NaN weight: refused at load (exit 5), not a perplexity of null
  const { readSafetensors, writeSafetensors, tensorF32 } = await import("../../src/engine/safetensors.ts");
  const nan = path.join(root, "nan-ckpt");
  fs.cpSync(resolveCheckpointDir(run), nan, { recursive: true });
  const wf = path.join(nan, "model.safetensors");
  const file = readSafetensors(wf);
  const tensors = new Map(
    [...file.tensors.entries()].map(([name, t]) => [
      name,
      { dtype: "F32" as const, shape: t.shape, data: tensorF32(file, name) },
    ]),
  );
  tensors.values().next().value!.data[3] = Number.NaN;
  writeSafetensors(wf, tensors, file.metadata);
  r = cli(["eval", "ppl", "--ckpt", nan, "--db", db, "--batches", "1"]);
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stderr, /\[3\] is NaN/);
  // a neighbour block rewritten with another shape (its CRC valid): refused, not read shifted
  const { readBlock, writeBlock, blockName } = await import("../../src/util/blockfile.ts");
  const d = dbCopy("reshaped-db");
  const man = JSON.parse(fs.readFileSync(path.join(d, "manifest.json"), "utf8"));
  const info = man.neighbours.valid;
  const bf = blockName(path.join(d, "neighbours", "valid"), 0, Math.min(info.blockSize, info.samples));
  const blk = readBlock(bf, Int32Array);
  writeBlock(bf, blk.data, (blk.rows * blk.cols) / (blk.cols / 2), blk.cols / 2);
  const { Database } = await import("../../src/db/database.ts");
  assert.throws(() => new Database(d).sampleRetrieved("valid", 0, 1, 32), /the manifest says/);
  // dataset names: empty, a path, a line break; a missing database is not created
  const notes = path.join(root, "notes14");
  fs.mkdirSync(notes);
  fs.writeFileSync(path.join(notes, "a.txt"), "Stubb lit his pipe. ".repeat(10));
  for (const name of ["", "../../evil", "two\nlines"]) {
    r = cli([
      "db",
      "add",
      "--db",
      dbCopy(`names-${Math.random().toString(36).slice(2)}`),
      "--name",
      name,
      "--text",
      notes,
    ]);
    assert.equal(r.code, 2, `${JSON.stringify(name)}: ${r.stderr}`);
    assert.match(r.stderr, /is not a dataset name/);
  }
  const missing = path.join(root, "no", "such", "db");
  r = cli(["db", "add", "--db", missing, "--name", "notes", "--text", notes]);
  assert.equal(r.code, 3, r.stderr);
  assert.ok(!fs.existsSync(path.join(root, "no")), "the folder tree was created");
});
