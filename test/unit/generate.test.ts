/**
 * Generation: the incremental decoder (KV cache, Retro's per-chunk encoding) gives the training forward's
 * logits at every position — prefill, single steps, uneven feeds, several sequences in one batch.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Model } from "../../src/model/model.ts";
import { resolveModelConfig } from "../../src/model/config.ts";
import { Decoder, type Feed } from "../../src/generate/decoder.ts";
import { Rng } from "../../src/util/rng.ts";

const base = { vocab: 61, d: 32, heads: 4, layers: 4, seq: 32, chunk: 4, k: 2, r: 8, enc_layers: 2 };

function randomModel(kind: "gpt" | "retro", rope: boolean, seed: number, nullKv = false): Model {
  const cfg = resolveModelConfig(
    kind === "gpt"
      ? { ...base, model: "gpt" }
      : { ...base, model: "retro", cca_layers: [2, 4], retrieval_rope: rope, retrieval_null_kv: nullKv },
  );
  const model = new Model(cfg, { seed });
  // larger weights than the N(0, 0.02) init, so that every path (CCA, encoder) moves the logits visibly
  const w = model.store.data,
    rng = new Rng(seed + 1);
  for (let i = 0; i < w.length; i++) w[i] += 0.1 * rng.normal();
  return model;
}

function fullLogits(model: Model, ids: Int32Array, nbr: Int32Array | undefined): Float32Array {
  const n = ids.length;
  model.forward({ B: 1, n, ids, targets: new Int32Array(n), neighbours: nbr }, { keepLogits: true });
  return model.logits();
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let diff = 0,
    scale = 0;
  for (let i = 0; i < a.length; i++)
    (diff = Math.max(diff, Math.abs(a[i] - b[i]))), (scale = Math.max(scale, Math.abs(b[i])));
  return diff / scale;
}

for (const [kind, rope, nullKv] of [
  ["gpt", false, false],
  ["retro", false, false],
  ["retro", true, false],
  ["retro", true, true],
] as const) {
  test(
    `decoder: ${kind}${rope ? " + retrieval_rope" : ""}${nullKv ? " + retrieval_null_kv" : ""} incremental ` +
      `logits equal the full forward at every position`,
    () => {
      const model = randomModel(kind, rope, 7, nullKv);
      const c = model.config,
        V = c.vocab,
        n = c.seq,
        l = n / c.chunk,
        kr = c.k * c.r;
      const rng = new Rng(3);
      const seqs = [0, 1].map(() => Int32Array.from({ length: n }, () => rng.int(V)));
      const nbrs = [0, 1].map(() => Int32Array.from({ length: l * kr }, () => rng.int(V)));
      const ref = seqs.map((ids, i) => fullLogits(model, ids, kind === "retro" ? nbrs[i] : undefined));
      const dec = new Decoder(model);
      const slots = [dec.newSlot(), dec.newSlot()];
      const got = [new Float32Array(n * V), new Float32Array(n * V)];
      const feedOf = (i: number, count: number): Feed => {
        const slot = slots[i],
          from = slot.pos;
        const neighbours = new Map(
          dec.chunksCompleted(from, from + count).map((u) => [u, nbrs[i].slice(u * kr, (u + 1) * kr)] as const),
        );
        return { slot, ids: seqs[i].subarray(from, from + count), neighbours };
      };
      // prefill of uneven lengths (5 and 9 tokens: chunk 1 completes inside the second), all logits kept
      const pre = dec.forward([feedOf(0, 5), feedOf(1, 9)], { allLogits: true });
      got[0].set(pre.subarray(0, 5 * V), 0);
      got[1].set(pre.subarray(5 * V, 14 * V), 0);
      // then both together: one token per step for sequence 0, three at a time for sequence 1 while it lasts
      while (slots[0].pos < n) {
        const feeds: Feed[] = [feedOf(0, 1)];
        const take = Math.min(3, n - slots[1].pos);
        if (take > 0) feeds.push(feedOf(1, take));
        const p0 = slots[0].pos,
          p1 = slots[1].pos;
        const out = dec.forward(feeds, { allLogits: true });
        got[0].set(out.subarray(0, V), p0 * V);
        if (take > 0) got[1].set(out.subarray(V, (1 + take) * V), p1 * V);
      }
      for (let i = 0; i < 2; i++) {
        const err = maxRelErr(got[i], ref[i]);
        assert.ok(err <= 1e-5, `sequence ${i}: max relative error ${err}`);
      }
      // the last-position logits (the default) are the all-positions' last row
      dec.reset(slots[0]);
      const last = dec.forward([feedOf(0, 13)]);
      assert.ok(maxRelErr(last, ref[0].subarray(12 * V, 13 * V)) <= 1e-5);
    },
  );
}

test("decoder: a chunk's neighbours reach no position before the one that completes the chunk", () => {
  const model = randomModel("retro", true, 11);
  const c = model.config,
    V = c.vocab,
    kr = c.k * c.r,
    m = c.chunk;
  const rng = new Rng(5);
  const ids = Int32Array.from({ length: 12 }, () => rng.int(V));
  const run = (nb: Int32Array) => {
    const dec = new Decoder(model);
    const slot = dec.newSlot();
    return dec.forward(
      [
        {
          slot,
          ids,
          neighbours: new Map(dec.chunksCompleted(0, 12).map((u) => [u, u === 1 ? nb : new Int32Array(kr)] as const)),
        },
      ],
      { allLogits: true },
    );
  };
  const a = run(Int32Array.from({ length: kr }, () => rng.int(V))),
    b = run(Int32Array.from({ length: kr }, () => rng.int(V)));
  for (let t = 0; t < 12; t++) {
    const d = maxRelErr(a.subarray(t * V, (t + 1) * V), b.subarray(t * V, (t + 1) * V));
    // chunk 1 ends at position 2m−1 = 7: positions 7 … 10 read it (and later ones read those positions)
    if (t >= 2 * m - 1) assert.ok(d > 1e-3, `position ${t} should see chunk 1's neighbours`);
    else assert.equal(d, 0, `position ${t} must not see chunk 1's neighbours`);
  }
  const dec = new Decoder(model);
  assert.throws(() => dec.forward([{ slot: dec.newSlot(), ids }]), /completes chunk 0 but brings no neighbours/);
});

// ------------------------------------------------------------------------------------------ text generation
import * as path from "node:path";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { Generator, type GenerateEvent } from "../../src/generate/generate.ts";
import { Sampler, argmax } from "../../src/generate/sampling.ts";
import { tmpDir, writeTextCorpus, smallConfig } from "../helpers.ts";

async function smallDb(): Promise<Database> {
  const root = tmpDir("gen-");
  await buildDatabase(path.join(root, "db"), smallConfig(writeTextCorpus(path.join(root, "corpus"), 30, 1200)));
  return new Database(path.join(root, "db"));
}

function modelFor(db: Database, kind: "gpt" | "retro", seed: number): Model {
  const cfg = resolveModelConfig({
    model: kind,
    vocab: db.tokenizer.vocabSize,
    d: 32,
    heads: 4,
    layers: 4,
    seq: 64,
    chunk: db.m,
    k: 2,
    r: 2 * db.m,
    enc_layers: 2,
    ...(kind === "retro" ? { cca_layers: [2, 4], retrieval_rope: true } : {}),
  });
  const model = new Model(cfg, { seed });
  const w = model.store.data,
    rng = new Rng(seed);
  for (let i = 0; i < w.length; i++) w[i] += 0.05 * rng.normal();
  return model;
}

process.env.RETRO_QUIET = "1";
const dbReady = smallDb();

test(
  "generate: Retro greedy text with re-retrieval every chunk and a sliding window equals recomputing the whole " +
    "window each token",
  async () => {
    const db = await dbReady;
    const retriever = await Retriever.open(db);
    const model = modelFor(db, "retro", 3);
    const c = model.config,
      m = c.chunk,
      kr = c.k * c.r;
    const prompt =
      "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse";
    const gen = new Generator(model, db.tokenizer, retriever);
    const events: GenerateEvent[] = [];
    for await (const ev of gen.stream([prompt], { maxTokens: 90, ignoreEod: true })) events.push(ev);
    const done = events.find((e) => e.type === "done")!;
    assert.ok(done.type === "done");
    const res = done.result;
    assert.equal(res.tokens.length, 90);
    assert.equal(res.finish, "length");
    // the streamed text is the result's text
    assert.equal(
      events
        .filter((e) => e.type === "text")
        .map((e) => (e as { text: string }).text)
        .join(""),
      res.text,
    );
    // reference: the training forward over the current window for every new token, neighbours retrieved afresh
    let window = db.tokenizer.encode(prompt);
    const out: number[] = [];
    let total = window.length;
    while (out.length < 90) {
      const l = Math.ceil(window.length / m),
        n = l * m;
      const ids = new Int32Array(n);
      ids.set(window);
      const full = Math.floor(window.length / m);
      const nb = new Int32Array(l * kr);
      if (full > 0) {
        const r = await retriever.retrieveChunks(
          Array.from({ length: full }, (_, u) => window.slice(u * m, (u + 1) * m)),
          c.k,
          c.r,
        );
        nb.set(r.tokens);
      }
      model.forward({ B: 1, n, ids, targets: new Int32Array(n), neighbours: nb }, { keepLogits: true });
      const tok = argmax(model.logits(), (window.length - 1) * c.vocab, window.length * c.vocab);
      out.push(tok);
      if (window.length + 1 > c.seq) window = window.slice(Math.floor(c.seq / 2 / m) * m);
      window = [...window, tok];
      total++;
    }
    assert.deepEqual(res.tokens, out);
    // one retrieval per chunk completed, counted from the sequence's start; each with its citations
    const retr = events.filter((e) => e.type === "retrieval");
    assert.equal(retr.length, Math.floor((total - 1) / m));
    assert.equal(res.retrievals, retr.length);
    assert.deepEqual(
      retr.map((e) => (e as { chunk: number }).chunk),
      retr.map((_, i) => i),
    );
    const first = retr[0] as Extract<GenerateEvent, { type: "retrieval" }>;
    assert.equal(first.neighbours.length, 2);
    assert.ok(
      first.neighbours[0].text.length > 0 &&
        first.neighbours[0].dataset === "moby" &&
        first.neighbours[0].score <= 1.0001,
    );
  },
);

test("generate: batch of prompts equals each alone; retrieve none = gate 0; prompt mode retrieves once", async () => {
  const db = await dbReady;
  const retriever = await Retriever.open(db);
  const model = modelFor(db, "retro", 5);
  const gen = new Generator(model, db.tokenizer, retriever);
  const prompts = ["The whale", "Queequeg was a native of Rokovoko, an island far away to the West and South."];
  const both = await gen.generate(prompts, { maxTokens: 30, ignoreEod: true });
  for (let i = 0; i < 2; i++)
    assert.deepEqual(both[i].tokens, (await gen.generate([prompts[i]], { maxTokens: 30, ignoreEod: true }))[0].tokens);
  const none = await gen.generate([prompts[1]], { maxTokens: 20, ignoreEod: true, retrieve: "none" });
  model.gate = 0;
  const plain = await new Generator(model, db.tokenizer, null).generate([prompts[1]], {
    maxTokens: 20,
    ignoreEod: true,
  });
  model.gate = 1;
  assert.deepEqual(none[0].tokens, plain[0].tokens);
  assert.equal(none[0].retrievals, 0);
  assert.equal(model.gate, 1, "the gate is restored after a generation");
  const once = await gen.generate([prompts[1]], { maxTokens: 20, ignoreEod: true, retrieve: "prompt" });
  assert.equal(once[0].retrievals, 1);
  await assert.rejects(
    new Generator(model, db.tokenizer, null).generate(["x"], { retrieve: "chunk" }),
    /needs a database/,
  );
});

test("generate: GPT stop strings, token budget, end of document, seeded sampling", async () => {
  const db = await dbReady;
  const model = modelFor(db, "gpt", 9);
  const gen = new Generator(model, db.tokenizer);
  const greedy = (await gen.generate(["It was"], { maxTokens: 40, ignoreEod: true }))[0];
  assert.equal(greedy.tokens.length, 40);
  // a stop string taken from the middle of the greedy text cuts it there
  const stop = greedy.text.slice(10, 13);
  const cut = (await gen.generate(["It was"], { maxTokens: 40, ignoreEod: true, stop: [stop] }))[0];
  assert.equal(cut.finish, "stop");
  assert.equal(cut.text, greedy.text.slice(0, greedy.text.indexOf(stop)));
  // sampling: the same seed gives the same tokens, another seed others; top-k 1 is greedy
  const s1 = (await gen.generate(["It was"], { maxTokens: 30, temperature: 1, seed: 1, ignoreEod: true }))[0];
  const s1b = (await gen.generate(["It was"], { maxTokens: 30, temperature: 1, seed: 1, ignoreEod: true }))[0];
  const s2 = (await gen.generate(["It was"], { maxTokens: 30, temperature: 1, seed: 2, ignoreEod: true }))[0];
  assert.deepEqual(s1.tokens, s1b.tokens);
  assert.notDeepEqual(s1.tokens, s2.tokens);
  const k1 = (await gen.generate(["It was"], { maxTokens: 40, temperature: 0.7, topK: 1, ignoreEod: true }))[0];
  assert.deepEqual(k1.tokens, greedy.tokens);
  // the end-of-document token ends a generation (make it the most likely token)
  const eod = db.tokenizer.eod;
  const wte = model.store.get("wte.weight").data,
    D = model.config.d;
  const lnf = model.store.get("lnf.weight").data,
    lnb = model.store.get("lnf.bias").data;
  lnb.set(lnf.map(() => 1));
  for (let j = 0; j < D; j++) wte[eod * D + j] = 5;
  const e = (await gen.generate(["It was"], { maxTokens: 10 }))[0];
  assert.equal(e.finish, "eod");
  assert.deepEqual(e.tokens, []);
});

test("sampling: top-p keeps the smallest set reaching p; temperature draws follow the softmax", () => {
  const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
  const counts = [0, 0, 0, 0];
  const s = new Sampler({ temperature: 1, topP: 0.8, seed: 3 });
  for (let i = 0; i < 4000; i++) counts[s.pick(logits)]++;
  assert.equal(counts[2] + counts[3], 0, "top-p 0.8 keeps tokens 0 and 1 only");
  assert.ok(Math.abs(counts[0] / 4000 - 0.625) < 0.03, `token 0: ${counts[0] / 4000} (0.5 / 0.8)`);
  const all = [0, 0, 0, 0];
  const t = new Sampler({ temperature: 1, seed: 4 });
  for (let i = 0; i < 8000; i++) all[t.pick(logits)]++;
  [0.5, 0.3, 0.15, 0.05].forEach((p, i) =>
    assert.ok(Math.abs(all[i] / 8000 - p) < 0.02, `token ${i}: ${all[i] / 8000} vs ${p}`),
  );
  assert.throws(() => new Sampler({ topP: 0 }), /topP must be a number > 0 and ≤ 1/);
  assert.equal(argmax([1, 3, 3, 2]), 1);
});

test("retro generate: streams the continuation, JSONL for a prompts file, one-line errors", async () => {
  const db = await dbReady;
  const { train } = await import("../../src/train/trainer.ts");
  const { cli } = await import("../helpers.ts");
  const fs = await import("node:fs");
  const run = path.join(tmpDir("genrun-"), "run");
  await train(run, {
    db: db.dir,
    model: { model: "retro", d: 32, heads: 4, layers: 2, seq: 64, k: 2, r: 32, cca_layers: [2] },
    steps: 2,
    batch: 2,
    evalEvery: 1e9,
    saveEvery: 1e9,
    evalBatches: 0,
    threads: 1,
  });
  const one = cli([
    "generate",
    "--ckpt",
    run,
    "--prompt",
    "Call me Ishmael.",
    "--max-tokens",
    "40",
    "--ignore-eod",
    "--show-neighbours",
    "--threads",
    "1",
  ]);
  assert.equal(one.code, 0, one.stderr);
  assert.ok(one.stdout.startsWith("Call me Ishmael."));
  assert.match(one.stderr, /\[retrieved for chunk 0: "/);
  assert.match(one.stderr, /\[0\] moby document \d+, chunk \d+, score/);
  assert.match(one.stderr, /\[40 tokens, finish: length, \d+ retrievals\]/);
  const file = path.join(path.dirname(run), "prompts.jsonl");
  fs.writeFileSync(file, '{"prompt": "The whale"}\n\n{"prompt": "Queequeg"}\n');
  const many = cli([
    "generate",
    "--ckpt",
    run,
    "--prompts",
    file,
    "--max-tokens",
    "20",
    "--ignore-eod",
    "--retrieve",
    "prompt",
  ]);
  assert.equal(many.code, 0, many.stderr);
  const lines = many.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { prompt: string; tokens: number; retrievals: number });
  assert.deepEqual(
    lines.map((l) => [l.prompt, l.tokens, l.retrievals]),
    [
      ["The whale", 20, 1],
      ["Queequeg", 20, 1],
    ],
  );
  fs.appendFileSync(file, "{not json\n");
  const bad = cli(["generate", "--ckpt", run, "--prompts", file]);
  assert.equal(bad.code, 4);
  assert.match(bad.stderr, /prompts\.jsonl:4: not JSON/);
  assert.equal(cli(["generate", "--ckpt", run, "--prompt", "x", "--top-p", "2"]).code, 2);
  assert.equal(cli(["generate", "--ckpt", run]).code, 2);
  assert.match(
    cli(["generate", "--ckpt", run, "--prompts", file, "--batch", "0"]).stderr,
    /--batch must be an integer ≥ 1, got 0/,
  );
});
