/**
 * Bad input, table-driven: each case a command line (and the file it reads), the exit code it must end with and
 * a fragment of its one-line message; then a fuzz pass writing random bytes over each artefact kind (fixed
 * seeds), asserting that every command reading it exits with a documented code — never a signal, never a trace.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { readSafetensors, writeSafetensors, tensorF32, type TensorOut } from "../../src/engine/safetensors.ts";
import { Rng } from "../../src/util/rng.ts";
import { cli, tmpDir, writeTextCorpus, tinyRun } from "../helpers.ts";

let root = "",
  db = "",
  run = "",
  corpus = "";
before(async () => {
  root = tmpDir("retro-bad-");
  ({
    dbDir: db,
    run,
    corpus,
  } = await tinyRun(root, { model: "gpt", d: 32, heads: 4, layers: 2, seq: 64, r: 32 }, { evalBatches: 1 }));
});

const noTrace = (s: string) => !/\n\s+at .+:\d+:\d+\)?\n/.test(s) && !/node:internal/.test(s);

test("malformed input: each case one line, its documented exit code", () => {
  const file = (name: string, content: string) => {
    const p = path.join(root, name);
    fs.writeFileSync(p, content);
    return p;
  };
  const newRun = () => path.join(root, `r${Math.random().toString(36).slice(2)}`);
  const newDb = () => path.join(root, `d${Math.random().toString(36).slice(2)}`);
  const T = () => [
    "train",
    "--out",
    newRun(),
    "--db",
    db,
    "--model",
    "gpt",
    "--d",
    "32",
    "--heads",
    "4",
    "--layers",
    "2",
    "--seq",
    "64",
    "--steps",
    "1",
  ];
  const B = () => ["db", "build", "--out", newDb(), "--text", corpus];
  const cases: [string[], number, RegExp][] = [
    [[...T(), "--seed", "12abc"], 2, /--seed must be an integer ≥ 0 and ≤ 4294967295, got 12abc/],
    [[...T(), "--seed", "1e30"], 2, /--seed must be an integer/],
    [[...T(), "--seed", "NaN"], 2, /--seed must be an integer/],
    [[...T(), "--seq", "0"], 2, /--seq must be an integer ≥ 1, got 0/],
    [[...T(), "--clip", "-1"], 2, /--clip must be a number ≥ 0, got -1/],
    [[...T(), "--warmup", "-10"], 2, /--warmup must be an integer ≥ 0/],
    [[...T(), "--eval-batches", "-3"], 2, /--eval-batches must be an integer ≥ -1/],
    [[...T(), "--lr", "abc"], 2, /--lr must be a number > 0, got abc/],
    [[...T(), "--beta2", "1"], 2, /--beta2 must be a number ≥ 0 and < 1/],
    [[...T(), "--bogus"], 2, /unknown option '--bogus'/],
    [["nosuchcommand"], 2, /unknown command/],
    [["train", "--out", file("a-file", "x"), "--db", db], 8, /a file is in the way where a folder is needed/],
    [[...T(), "--config", file("bad.json", "{not json")], 2, /is not valid JSON/],
    [[...B(), "--chunk-length", "0"], 2, /--chunk-length must be an integer ≥ 1/],
    [[...B(), "--chunk-length", "NaN"], 2, /--chunk-length must be an integer/],
    [[...B(), "--tokenizer", "bpe:0"], 2, /vocabSize \(bpe\) must be an integer ≥ 258/],
    [[...B(), "--tokenizer", "bpe:10"], 2, /vocabSize \(bpe\) must be an integer ≥ 258/],
    [[...B(), "--tokenizer", "bpe:99999999"], 2, /≤ 65535, got 99999999/],
    [[...B(), "--index", "HNSW99999999999"], 2, /HNSW's M must be an integer ≥ 2 and ≤ 512/],
    [[...B(), "--valid-fraction", "0"], 2, /--valid-fraction must be a number > 0 and < 1/],
    [
      [...B(), "--config", file("dim.json", JSON.stringify({ embedder: { kind: "lexical", dim: -3 } }))],
      2,
      /config.embedder.dim must be an integer ≥ 1/,
    ],
    [[...B(), "--config", file("notjson.json", "[1,")], 2, /is not valid JSON/],
    [["db", "inspect", "--db", db, "--k", "abc"], 2, /--k must be an integer ≥ 1, got abc/],
    [["db", "query", "--db", path.join(root, "nope")], 3, /not found/],
    [["eval", "ppl", "--ckpt", run, "--db", db, "--batch", "0"], 2, /--batch must be an integer ≥ 1, got 0/],
    [["parity", path.join(root, "nodump"), "--config", "{bad"], 2, /--config is not valid JSON/],
    [["generate", "--ckpt", run, "--prompt", "x", "--top-p", "0"], 2, /--top-p must be a number > 0 and ≤ 1/],
    [["generate", "--ckpt", run, "--prompt", "x", "--temperature", "-1"], 2, /--temperature must be a number ≥ 0/],
    [
      [
        "sft",
        "--out",
        newRun(),
        "--init",
        run,
        "--data",
        file("chat.jsonl", '{"messages": [{"role": "user", "content": "x"}]}\n'),
      ],
      4,
      /chat\.jsonl:1: the last message must be the assistant's/,
    ],
    [
      ["sft", "--out", newRun(), "--init", run, "--data", path.join(root, "missing.jsonl")],
      3,
      /instruction data not found/,
    ],
    [["sft", "--out", newRun(), "--init", run, "--data", "x.jsonl:abc"], 3, /not found/],
    [["sft", "--out", newRun(), "--data", file("c2.jsonl", "{}")], 2, /--init CHECKPOINT is required/],
    [
      ["eval", "qa", "--ckpt", run, "--data", file("weird.json", JSON.stringify({ rows: [] }))],
      4,
      /unknown shape.*accepted formats/,
    ],
    [
      ["eval", "qa", "--ckpt", run, "--data", file("noans.jsonl", '{"question": "q?"}\n')],
      4,
      /noans\.jsonl:1: field "answers" is missing/,
    ],
    [
      [
        "eval",
        "qa",
        "--ckpt",
        run,
        "--data",
        file("ok.jsonl", '{"question": "q?", "answers": ["a"]}\n'),
        "--variants",
        "bogus",
      ],
      2,
      /--variants: unknown "bogus"/,
    ],
    [
      [
        "eval",
        "score",
        "--predictions",
        file("p.json", "{}"),
        "--gold",
        file("g.jsonl", '{"id": "1", "question": "q", "answers": ["a"]}\n'),
      ],
      6,
      /1 of 1 gold questions have no prediction/,
    ],
  ];
  const failures: string[] = [];
  for (const [args, code, re] of cases) {
    const r = cli(args);
    const line = r.stderr.trim();
    if (r.code !== code || !re.test(line) || !noTrace(r.stderr))
      failures.push(
        `retro ${args.join(" ")}\n  → exit ${r.code}: ${line.split("\n")[0]}\n  expected exit ${code} and ${re}`,
      );
  }
  assert.deepEqual(failures, []);
});

test("a checkpoint whose optimizer state lacks its step is refused on resume (exit 5)", () => {
  const copy = path.join(root, "gpt-no-t");
  fs.cpSync(run, copy, { recursive: true });
  const latest = JSON.parse(fs.readFileSync(path.join(copy, "latest.json"), "utf8")) as { dir: string };
  const f = path.join(copy, latest.dir, "optim.safetensors");
  const o = readSafetensors(f);
  const tensors = new Map<string, TensorOut>(
    ["m", "v"].map((k) => [k, { dtype: "F32", shape: [tensorF32(o, k).length], data: tensorF32(o, k) }]),
  );
  writeSafetensors(f, tensors, {}); // a valid file (its checksum right) without "t"
  const r = cli(["train", "--out", copy, "--resume"]);
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stderr, /no valid step count "t"/);
});

test("fuzz: random bytes over each artefact kind → a documented exit code, never a signal or a trace", () => {
  const latest = (JSON.parse(fs.readFileSync(path.join(run, "latest.json"), "utf8")) as { dir: string }).dir;
  const nbr = path.join("neighbours", "valid", fs.readdirSync(path.join(db, "neighbours", "valid"))[0]);
  // [artefact, owner ("db" | "run"), the command that reads it]
  const kinds: [string, "db" | "run", (dbDir: string, runDir: string) => string[]][] = [
    ["tokens/valid.tok", "db", (d, r) => ["eval", "ppl", "--ckpt", r, "--db", d, "--batches", "1"]],
    ["tokens/valid.docs", "db", (d, r) => ["eval", "ppl", "--ckpt", r, "--db", d, "--batches", "1"]],
    ["chunks.blk", "db", (d) => ["db", "inspect", "--db", d, "--sample", "0"]],
    ["index/index.usearch", "db", (d) => ["db", "query", "--db", d, "--split", "valid"]],
    [nbr, "db", (d) => ["db", "inspect", "--db", d, "--sample", "0"]],
    ["manifest.json", "db", (d) => ["db", "stats", "--db", d]],
    [
      path.join(latest, "model.safetensors"),
      "run",
      (d, r) => ["eval", "ppl", "--ckpt", r, "--db", d, "--batches", "1"],
    ],
    [path.join(latest, "optim.safetensors"), "run", (_d, r) => ["train", "--out", r, "--resume"]],
  ];
  const allowed = new Set([0, 3, 4, 5, 6]);
  const failures: string[] = [];
  let runs = 0,
    refused = 0;
  kinds.forEach(([rel, owner, cmd], ki) => {
    for (const seed of [1, 2, 3]) {
      const dDir = path.join(root, `fz-db-${ki}-${seed}`),
        rDir = path.join(root, `fz-run-${ki}-${seed}`);
      fs.cpSync(db, dDir, { recursive: true });
      fs.cpSync(run, rDir, { recursive: true });
      // the run names its database: point the copy at the copied database
      const cfgFile = path.join(rDir, "config.json");
      fs.writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, "utf8")), db: dDir }));
      const target = path.join(owner === "db" ? dDir : rDir, rel);
      const buf = fs.readFileSync(target);
      const rng = new Rng(1000 * ki + seed);
      let damaged: Buffer;
      if (seed === 3)
        damaged = buf.subarray(0, rng.int(Math.max(1, buf.length))); // truncated
      else {
        damaged = Buffer.from(buf);
        for (let i = 0; i < 16; i++) damaged[rng.int(damaged.length)] = rng.int(256);
      }
      fs.writeFileSync(target, damaged);
      const r = cli(cmd(dDir, rDir));
      runs++;
      if (r.code !== 0) refused++;
      if (!allowed.has(r.code) || !noTrace(r.stderr))
        failures.push(`${rel} seed ${seed}: exit ${r.code}\n${r.stderr.slice(0, 400)}`);
    }
  });
  assert.equal(runs, kinds.length * 3);
  // damage is detected, not merely survived: nearly every damaged artefact is refused before use
  assert.ok(refused >= runs - 2, `only ${refused} of ${runs} damaged artefacts refused`);
  assert.deepEqual(failures, []);
});

test("symbolic links in a corpus folder are followed (files and folders, a cycle once); a broken one is reported", async () => {
  const src = path.join(root, "link-src");
  writeTextCorpus(src, 6, 800);
  const dir = path.join(root, "link-corpus");
  fs.mkdirSync(path.join(dir, "sub"), { recursive: true });
  fs.copyFileSync(path.join(src, "doc001.txt"), path.join(dir, "doc001.txt"));
  fs.symlinkSync(path.join(src, "doc002.txt"), path.join(dir, "linked-file.txt"));
  fs.mkdirSync(path.join(root, "link-dir"));
  for (const f of ["doc003.txt", "doc004.txt"]) fs.copyFileSync(path.join(src, f), path.join(root, "link-dir", f));
  fs.symlinkSync(path.join(root, "link-dir"), path.join(dir, "linked-folder"));
  fs.symlinkSync(dir, path.join(dir, "sub", "cycle")); // a loop back to the top: walked once
  fs.symlinkSync(path.join(root, "nowhere.txt"), path.join(dir, "broken.txt"));
  const out = path.join(root, "link-db");
  const r = cli([
    "db",
    "build",
    "--out",
    out,
    "--text",
    dir,
    "--until",
    "tokens",
    "--tokenizer",
    "gpt2",
    "--valid-fraction",
    "0.01",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const man = JSON.parse(fs.readFileSync(path.join(out, "manifest.json"), "utf8")) as {
    datasets: { trainDocs: number; validDocs: number }[];
  };
  assert.equal(
    man.datasets[0].trainDocs + man.datasets[0].validDocs,
    4,
    "the copied file, the linked file and the linked folder's two; the cycle adds none",
  );
  assert.match(r.stderr, /broken\.txt: broken symbolic link, skipped/);
});
