import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { OnnxEmbedder } from "../../src/embed/onnx.ts";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import type { RetroError } from "../../src/util/errors.ts";
import { ROOT, smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

process.env.RETRO_QUIET = "1";
const FIX = path.join(ROOT, "test", "fixtures", "tiny-bert");
const spec = {
  kind: "onnx" as const,
  model: path.join(FIX, "model.onnx"),
  vocab: path.join(FIX, "vocab.txt"),
  maxLength: 32,
  batchSize: 3,
  lowercase: true,
};

test(
  "ONNX embedder: mean pooling over tokens except [CLS]/[SEP] matches PyTorch's (fixture made by " +
    "make_tiny_bert.py)",
  async () => {
    const emb = (await OnnxEmbedder.create(spec)) as OnnxEmbedder;
    assert.equal(emb.dim, 16);
    const expected = JSON.parse(fs.readFileSync(path.join(FIX, "expected.json"), "utf8")) as {
      ids: number[][];
      pooled: number[][];
    };
    // the fixture's first row is padded with [PAD]=0; the embedder pads itself, so strip the padding
    const seqs = expected.ids.map((r) => r.filter((t) => t !== 0));
    const got = await emb.embedIds(seqs);
    for (let i = 0; i < seqs.length; i++)
      for (let j = 0; j < 16; j++)
        assert.ok(Math.abs(got[i * 16 + j] - expected.pooled[i][j]) < 1e-5, `row ${i} dim ${j}`);
    // batching does not change the result (rows padded to the longest in the batch are masked)
    const one = await emb.embedIds([seqs[0]]);
    for (let j = 0; j < 16; j++) assert.ok(Math.abs(one[j] - got[j]) < 1e-5);
  },
);

test("ONNX embedder: WordPiece tokenization of chunk text, truncation and EOD removal", async () => {
  const emb = (await OnnxEmbedder.create(spec)) as OnnxEmbedder;
  const vocab = fs.readFileSync(spec.vocab, "utf8").split("\n");
  const ids = emb.encodeIds("Call me Ishmael.<|endoftext|> Whales!");
  assert.deepEqual(
    ids.map((i) => vocab[i]),
    ["[CLS]", "call", "me", "ishmael", ".", "whale", "##s", "!", "[SEP]"],
  );
  assert.equal(emb.encodeIds("the ".repeat(100)).length, 32);
  const v = await emb.embed(["the whale", "", "captain ahab"]);
  assert.equal(v.length, 3 * 16);
  assert.ok(Math.abs(Math.hypot(...v.subarray(0, 16)) - 1) < 1e-5);
});

test("ONNX embedder: bad model files give clear errors", async () => {
  await assert.rejects(OnnxEmbedder.create({ ...spec, model: "/no/model.onnx" }), (e: RetroError) => e.code === 3);
  const bad = path.join(tmpDir(), "bad.onnx");
  fs.writeFileSync(bad, "not a model");
  await assert.rejects(
    OnnxEmbedder.create({ ...spec, model: bad }),
    (e: RetroError) => e.code === 5 && /cannot load the ONNX model/.test(e.message),
  );
});

test("a database built with the ONNX embedder works end to end", async () => {
  const corpus = writeTextCorpus(path.join(tmpDir(), "corpus"), 15, 800);
  const dir = path.join(tmpDir(), "db");
  await buildDatabase(dir, smallConfig(corpus, { embedder: spec }));
  const db = new Database(dir);
  assert.equal(db.manifest.index!.dim, 16);
  assert.match(db.manifest.index!.embedderId, /^onnx-/);
  assert.ok(db.sampleNeighbours("train", 0).some((x) => x >= 0));
});
