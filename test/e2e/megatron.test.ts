// Megatron-LM's indexed dataset: a database's documents exported (read back by the Python peer written from the
// format's description, when python3 + numpy are here), and a database built from such a dataset holds the same
// documents' tokens; damaged files and a tokenizer that cannot read GPT-2 ids are refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { readMegatronDataset } from "../../src/data/megatron.ts";
import { cli, peerPython, ROOT, smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

const PEER = path.join(ROOT, "..", "shared", "peers", "megatron_indexed.py");

/** every document of both splits, as comma-joined token ids (EOD included), sorted */
function allDocs(dir: string): string[] {
  const db = new Database(dir);
  const out: string[] = [];
  for (const r of [db.train, db.valid])
    for (let i = 0; i < r.nDocs; i++) {
      const start = r.docs[4 * i + 2],
        len = r.docs[4 * i + 3];
      out.push([...r.read(start, start + len), db.tokenizer.eod].join(","));
    }
  db.close();
  return out.sort();
}

test("export megatron-data: MMIDIDX files the peer reads; db build --megatron gives back the same documents", async () => {
  const root = tmpDir("retro-megatron-");
  process.env.RETRO_QUIET = "1";
  const db = path.join(root, "db");
  await buildDatabase(
    db,
    smallConfig(writeTextCorpus(path.join(root, "corpus"), 12, 1500), {
      tokenizer: { kind: "gpt2" },
      validFraction: 0.2,
    }),
  );
  const prefix = path.join(root, "mg", "moby");
  const r = cli(["export", "megatron-data", "--db", db, "--out", prefix]);
  assert.equal(r.code, 0, r.stderr);
  const sum = JSON.parse(r.stdout) as { sequences: number; tokens: number; dtype: string; sha256: string };
  assert.equal(sum.dtype, "uint16", "Megatron stores a vocabulary under 65,500 ids as uint16");
  // read back by our reader: the train split's documents, each ending with EOD
  const d = new Database(db);
  const back = [...readMegatronDataset(prefix)];
  assert.equal(back.length, d.train.nDocs);
  for (let i = 0; i < back.length; i++) {
    const start = d.train.docs[4 * i + 2],
      len = d.train.docs[4 * i + 3];
    assert.deepEqual([...back[i]], [...d.train.read(start, start + len), d.tokenizer.eod]);
  }
  d.close();
  // the peer, written from Megatron's format description
  const py = peerPython("numpy");
  if (fs.existsSync(PEER) && py) {
    const p = spawnSync(py, [PEER, prefix, "--sha256", "--doc", "0"], { encoding: "utf8" });
    assert.equal(p.status, 0, p.stderr);
    const info = JSON.parse(p.stdout) as {
      version: number;
      sequences: number;
      documents: number;
      tokens: number;
      doc: number[];
      sha256_int64: string;
    };
    assert.equal(info.version, 1);
    assert.equal(info.sequences, sum.sequences);
    assert.equal(info.documents, sum.sequences);
    assert.equal(info.tokens, sum.tokens);
    assert.equal(info.sha256_int64, sum.sha256);
    assert.deepEqual(info.doc, [...back[0]]);
  }
  // and back in: a database built from the Megatron dataset holds the same documents (train and held out)
  const db2 = path.join(root, "db2");
  const b = cli(["db", "build", "--out", db2, "--megatron", prefix, "--tokenizer", "gpt2", "--until", "chunks"]);
  assert.equal(b.code, 0, b.stderr);
  const exported = back.map((x) => [...x].join(",")).sort();
  assert.deepEqual(allDocs(db2), exported);
  // …and out again, both splits in the original order: the same bytes as the dataset it was built from
  const again = path.join(root, "again");
  const x = cli(["export", "megatron-data", "--db", db2, "--out", again, "--split", "all"]);
  assert.equal(x.code, 0, x.stderr);
  assert.ok(fs.readFileSync(`${again}.bin`).equals(fs.readFileSync(`${prefix}.bin`)), "PREFIX.bin differs");
  assert.ok(fs.readFileSync(`${again}.idx`).equals(fs.readFileSync(`${prefix}.idx`)), "PREFIX.idx differs");
  // refused: a learned BPE cannot read GPT-2 ids; a damaged index
  const bpe = cli(["db", "build", "--out", path.join(root, "db3"), "--megatron", prefix, "--tokenizer", "bpe:300"]);
  assert.equal(bpe.code, 2, bpe.stderr);
  assert.match(bpe.stderr, /Megatron dataset of GPT-2 token ids/);
  const idx = fs.readFileSync(`${prefix}.idx`);
  idx.writeBigInt64LE(7n, 34 + 4 * sum.sequences); // the first sequence's offset
  fs.writeFileSync(`${prefix}.idx`, idx);
  const bad = cli(["db", "build", "--out", path.join(root, "db4"), "--megatron", prefix, "--tokenizer", "gpt2"]);
  assert.equal(bad.code, 5, bad.stderr);
  assert.match(bad.stderr, /not a Megatron indexed dataset/);
});

test("hf:DIR as a checkpoint: Retro-fitting a GPT-2 folder, and eval / generate reading it in place", async () => {
  const { Model } = await import("../../src/model/model.ts");
  const { resolveModelConfig } = await import("../../src/model/config.ts");
  const { exportHf } = await import("../../src/model/hf.ts");
  const root = tmpDir("retro-hf-e2e-");
  process.env.RETRO_QUIET = "1";
  const db = path.join(root, "db");
  await buildDatabase(
    db,
    smallConfig(writeTextCorpus(path.join(root, "corpus"), 12, 1500), { tokenizer: { kind: "gpt2" } }),
  );
  const hf = path.join(root, "gpt2-tiny");
  exportHf(
    new Model(resolveModelConfig({ model: "gpt", vocab: 50257, d: 32, heads: 4, layers: 2, seq: 64, r: 64 }), {
      seed: 3,
    }),
    "gpt2",
    hf,
  );
  const t = cli(
    ["train", "--db", db, "--out", path.join(root, "rfit"), "--init", `hf:${hf}`, "--model", "retro"].concat([
      "--r",
      "32",
      "--k",
      "2",
      "--steps",
      "2",
      "--batch",
      "2",
      "--eval-batches",
      "1",
    ]),
  );
  assert.equal(t.code, 0, t.stderr);
  const cfg = JSON.parse(fs.readFileSync(path.join(root, "rfit", "config.json"), "utf8"));
  assert.equal(cfg.init, `hf:${hf}`);
  assert.equal(cfg.model.model, "retro");
  assert.equal(cfg.model.d, 32);
  const e = cli(["eval", "ppl", "--ckpt", `hf:${hf}`, "--db", db, "--batches", "1"]);
  assert.equal(e.code, 0, e.stderr);
  const g = cli(["generate", "--ckpt", `hf:${hf}`, "--db", db, "--prompt", "The whale", "--max-tokens", "3"]);
  assert.equal(g.code, 0, g.stderr);
  const noDb = cli(["eval", "ppl", "--ckpt", `hf:${hf}`]);
  assert.equal(noDb.code, 2);
  assert.match(noDb.stderr, /names no database; pass --db/);
  // a database of another tokenizer is refused before any training
  const bpeDb = path.join(root, "bpe-db");
  await buildDatabase(bpeDb, smallConfig(path.join(root, "corpus")));
  const m = cli(["train", "--db", bpeDb, "--out", path.join(root, "x"), "--init", `hf:${hf}`, "--steps", "1"]);
  assert.equal(m.code, 6, m.stderr);
  assert.match(m.stderr, /trained with tokenizer gpt2/);
  // eval logits: the logits file of a GPT-2 folder and of the Retro-fit's decoder (gate 0: the same decoder
  // weights after 2 steps differ), compared: a file equals itself, a perturbed one exits 1, a wrong size 6
  const ids = ["--ids", "464,1893,286,262,995"];
  const out = path.join(root, "logits.f32");
  const l = cli(["eval", "logits", "--ckpt", `hf:${hf}`, ...ids, "--out", out]);
  assert.equal(l.code, 0, l.stderr);
  assert.equal(fs.statSync(out).size, 5 * 50257 * 4);
  assert.equal(cli(["eval", "logits", "--ckpt", `hf:${hf}`, ...ids, "--compare", out]).code, 0);
  const bent = fs.readFileSync(out);
  bent.writeFloatLE(bent.readFloatLE(400) + 1, 400);
  fs.writeFileSync(out, bent);
  const differ = cli(["eval", "logits", "--ckpt", `hf:${hf}`, ...ids, "--compare", out]);
  assert.equal(differ.code, 1, differ.stderr);
  assert.match(differ.stderr, /logits differ/);
  const short = cli(["eval", "logits", "--ckpt", `hf:${hf}`, "--ids", "464,1893", "--compare", out]);
  assert.equal(short.code, 6, short.stderr);
  const retro = cli(["eval", "logits", "--ckpt", path.join(root, "rfit"), ...ids]);
  assert.equal(retro.code, 2, retro.stderr);
  assert.match(retro.stderr, /--gate 0/);
  assert.equal(cli(["eval", "logits", "--ckpt", path.join(root, "rfit"), "--gate", "0", ...ids]).code, 0);
});
