// Retrieval that pays: retrieval-only datasets, the eval controls, and the functional check that a Retro-fitted
// model learns to copy from its neighbours — documents of random pseudo-words whose exact twins sit in a
// retrieval-only dataset, where a GPT cannot beat the unigram entropy on held-out documents.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { resolveConfig } from "../../src/db/config.ts";
import { Loader } from "../../src/train/loader.ts";
import { train, zeroCcaOut } from "../../src/train/trainer.ts";
import { evalControls, evalInContext, longestCommonRun } from "../../src/train/controls.ts";
import { loadModel } from "../../src/model/checkpoint.ts";
import { Model } from "../../src/model/model.ts";
import { resolveModelConfig } from "../../src/model/config.ts";
import { writeTwinCorpus, twinDbConfig } from "../../src/data/synthetic.ts";
import { RetroError } from "../../src/util/errors.ts";
import { tmpDir } from "../helpers.ts";

process.env.RETRO_QUIET = "1";
const WORDS = 200,
  CHUNK = 16,
  SEQ = 64;
let DB = "";

before(async () => {
  const root = tmpDir("twins-");
  const files = writeTwinCorpus(path.join(root, "corpus"), { docs: 3000, docTokens: 64, words: WORDS, seed: 1 });
  DB = path.join(root, "db");
  await buildDatabase(DB, twinDbConfig(files, { chunk: CHUNK, seq: SEQ, words: WORDS }));
});

test("a retrieval-only dataset (weight 0) is all in the database, never held out, never drawn, not queried", () => {
  const db = new Database(DB);
  const [docs, twins] = db.manifest.datasets!;
  assert.equal(twins.weight, 0);
  assert.equal(twins.validDocs, 0);
  assert.equal(twins.trainDocs, 3000);
  assert.ok(docs.validDocs > 100 && docs.trainDocs + docs.validDocs === 3000);
  // every chunk of a twin is in the database
  let twinChunks = 0;
  for (let c = 0; c < db.nChunks; c++) if (db.train.docDataset(db.chunkDoc(c)) === 1) twinChunks++;
  assert.equal(twinChunks, 3000 * (64 / CHUNK));
  // the loader never draws an item that starts in a retrieval-only document
  const L = new Loader(db, { split: "train", seq: SEQ, batch: 1, seed: 1 });
  const reader = db.split("train");
  for (let i = 0; i < 500; i++) {
    const it = L.next().items[0];
    assert.equal(reader.docDataset(reader.docAt(L.start(it))), 0);
  }
  // samples made only of twin documents were not searched: their neighbours are all −1
  const R = new Loader(db, { split: "train", seq: SEQ, batch: 1, seed: 1, retrieval: { k: 2, r: 2 * CHUNK } });
  const last = db.manifest.neighbours!.train.samples - 1;
  assert.equal(reader.docDataset(reader.docAt(R.start(last))), 1);
  const full = db.sampleRetrieved("train", last, 2, 2 * CHUNK);
  assert.ok(
    full.every((t) => t === db.tokenizer.eod),
    "an unsearched sample reads as all end tokens",
  );
  // a held-out document's neighbour 0 is its twin: the chunk itself, then its continuation
  const V = new Loader(db, { split: "valid", seq: SEQ, batch: 4, seed: 0, retrieval: { k: 2, r: 2 * CHUNK } });
  const b = V.next();
  for (let s = 0; s < 4; s++) {
    for (let j = 0; j < SEQ / CHUNK; j++) {
      const nb = b.neighbours!.subarray((s * 4 + j) * 2 * 32, ((s * 4 + j) * 2 + 1) * 32);
      assert.deepEqual(
        Array.from(nb.subarray(0, 15)),
        Array.from(b.ids.subarray(s * SEQ + j * CHUNK, s * SEQ + j * CHUNK + 15)),
      );
    }
  }
  db.close();
});

test("a config where every dataset has weight 0 is refused", () => {
  assert.throws(
    () => resolveConfig({ datasets: [{ name: "a", source: "text", path: "x", weight: 0 }] }),
    (e: unknown) => e instanceof RetroError && /every dataset has weight 0/.test(e.message),
  );
  assert.throws(
    () => resolveConfig({ datasets: [{ name: "a", source: "text", path: "x", weight: -1 }] }),
    /weight must be a number ≥ 0/,
  );
});

test("longest common run: by hand, over several neighbour rows", () => {
  assert.equal(longestCommonRun([1, 2, 3, 4], [9, 2, 3, 9, 1, 2, 3, 4], 2, 4), 4);
  assert.equal(longestCommonRun([1, 2, 3, 4], [9, 2, 3, 9, 4, 1, 7, 7], 2, 4), 2);
  assert.equal(longestCommonRun([5, 6], [1, 2, 3, 4], 1, 4), 0);
});

test("zeroCcaOut: a Retro-fit starts exactly at its GPT (same loss and logits with any neighbours)", () => {
  const base = { vocab: 40, d: 16, heads: 2, layers: 2, seq: 16, chunk: 8, k: 2, r: 16 };
  const gpt = new Model(resolveModelConfig({ model: "gpt", ...base }), { seed: 1 });
  const retro = new Model(resolveModelConfig({ model: "retro", ...base, cca_layers: [1, 2], retrieval_rope: true }), {
    seed: 2,
  });
  for (const p of gpt.store.params) retro.store.get(p.name).data.set(p.data);
  const ids = Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 40),
    targets = Int32Array.from({ length: 32 }, (_, i) => (i * 3) % 40);
  const neighbours = Int32Array.from({ length: 2 * 2 * 2 * 16 }, (_, i) => (i * 11) % 40);
  const g = gpt.forward({ B: 2, n: 16, ids, targets }, { keepLogits: true }).loss;
  assert.notEqual(
    retro.forward({ B: 2, n: 16, ids, targets, neighbours }).loss,
    g,
    "random CCA output changes the loss",
  );
  zeroCcaOut(retro);
  assert.equal(retro.forward({ B: 2, n: 16, ids, targets, neighbours }, { keepLogits: true }).loss, g);
  assert.deepEqual(retro.logits(), gpt.logits());
});

test("in-context baseline: every evaluated chunk scored with and without its neighbours' text before the context", () => {
  const db = new Database(DB);
  const gpt = new Model(
    resolveModelConfig({
      model: "gpt",
      vocab: db.tokenizer.vocabSize,
      d: 32,
      heads: 4,
      layers: 2,
      seq: 128,
      k: 2,
      r: 2 * CHUNK,
    }),
    { seed: 3 },
  );
  const info = db.manifest.neighbours!.valid;
  const r = evalInContext(gpt, db, { batch: 8 });
  assert.equal(r.tokens, info.samples * (SEQ / CHUNK - 1) * CHUNK);
  assert.ok(Number.isFinite(r.with) && Number.isFinite(r.without) && r.with !== r.without);
  assert.equal(r.context, 128 - 2 * 2 * CHUNK - CHUNK);
  const small = new Model(
    resolveModelConfig({
      model: "gpt",
      vocab: db.tokenizer.vocabSize,
      d: 32,
      heads: 4,
      layers: 2,
      seq: 64,
      k: 2,
      r: 2 * CHUNK,
    }),
    { seed: 3 },
  );
  assert.throws(() => evalInContext(small, db, { batch: 8 }), /do not fit the GPT's 64 positions/);
  db.close();
});

test(
  "the retrieval path learns to copy: Retro-fitting beats GPT-fitting far on held-out documents whose twins are " +
    "in the database",
  async (t) => {
    const root = tmpDir("copy-");
    const size = { d: 128, heads: 4, layers: 4, seq: SEQ, r: 2 * CHUNK };
    const common = {
      db: DB,
      batch: 16,
      evalEvery: 1e9,
      saveEvery: 1e9,
      evalBatches: 0, // no evaluation during training: evalControls below measures what is asserted
      threads: 2,
      lr: 1e-3,
      minLr: 1e-4,
      warmup: 50,
    };
    // experiments/copy-task.ts's setup, seed 1, with the retrieval part at 3× the learning rate and a shorter fit
    // (450 steps: the GPT 5.136, Retro-fitting 4.536, random neighbours 5.973, gate 0 5.138; at 400 steps 4.494
    // before self-attention kept log-sum-exps instead of probabilities, 4.643 after — the plateau's end moves with
    // the last bits of the arithmetic; at 1× it needs ~450 steps to leave it, docs/measurements.md)
    await train(path.join(root, "gpt"), {
      ...common,
      model: { ...size, model: "gpt" },
      steps: 300,
      lr: 2e-3,
      minLr: 2e-4,
      seed: 1,
    });
    await train(path.join(root, "retro-fit"), {
      ...common,
      init: path.join(root, "gpt"),
      steps: 450,
      seed: 101,
      retrievalLr: 3,
      model: { model: "retro", cca_layers: [2, 4], k: 2 },
    });
    const db = new Database(DB);
    // the GPT it started from: on documents it never saw, more steps of GPT-fitting change nothing (5.134 after
    // 400 more, experiments/copy-task.ts), so the test does not pay for them
    const gpt = evalControls(loadModel(path.join(root, "gpt")).model, db, { batch: 16 });
    const rm = loadModel(path.join(root, "retro-fit")).model;
    assert.equal(rm.config.retrieval_rope, true, "new Retro runs use the recipe");
    const retro = evalControls(rm, db, { batch: 16 });
    db.close();
    const H = Math.log(WORDS);
    t.diagnostic(`held-out loss: GPT ${gpt.loss.own.toFixed(3)}, Retro-fit ${JSON.stringify(retro.loss)}`);
    // GPT cannot beat the unigram entropy on documents it never saw; a Retro that copies goes far below it
    assert.ok(gpt.loss.own > H - 0.3, `GPT-fitting held-out loss ${gpt.loss.own} (unigram entropy ${H})`);
    assert.ok(retro.loss.own < gpt.loss.own - 0.5, `Retro-fitting ${retro.loss.own} vs GPT-fitting ${gpt.loss.own}`);
    // the gain is retrieval: gone with random neighbours or none; positions that read nothing gain nothing
    assert.ok(
      retro.loss.random! > retro.loss.own + 0.5 &&
        retro.loss.another! > retro.loss.own + 0.5 &&
        retro.loss.none! > retro.loss.own + 0.5,
      JSON.stringify(retro.loss),
    );
    assert.ok(
      Math.abs(retro.noNeighboursRead.loss - gpt.noNeighboursRead.loss) < 0.2,
      "positions before the first chunk completes read nothing",
    );
    assert.ok(
      retro.overlap[3].loss < gpt.overlap[3].loss - 0.7,
      `chunks that overlap their neighbours: ${retro.overlap[3].loss} vs ${gpt.overlap[3].loss}`,
    );
  },
);
