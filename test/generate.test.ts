/**
 * Generation: the incremental decoder (KV cache, Retro's per-chunk encoding) gives the training forward's
 * logits at every position — prefill, single steps, uneven feeds, several sequences in one batch.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Model } from "../src/model/model.ts";
import { resolveModelConfig } from "../src/model/config.ts";
import { Decoder, type Feed } from "../src/generate/decoder.ts";
import { Rng } from "../src/util/rng.ts";

const base = { vocab: 61, d: 32, heads: 4, layers: 4, seq: 32, chunk: 4, k: 2, r: 8, enc_layers: 2 };

function randomModel(kind: "gpt" | "retro", rope: boolean, seed: number): Model {
  const cfg = resolveModelConfig(kind === "gpt" ? { ...base, model: "gpt" } : { ...base, model: "retro", cca_layers: [2, 4], retrieval_rope: rope });
  const model = new Model(cfg, { seed });
  // larger weights than the N(0, 0.02) init, so that every path (CCA, encoder) moves the logits visibly
  const w = model.store.data, rng = new Rng(seed + 1);
  for (let i = 0; i < w.length; i++) w[i] += 0.1 * rng.normal();
  return model;
}

function fullLogits(model: Model, ids: Int32Array, nbr: Int32Array | undefined): Float32Array {
  const n = ids.length;
  model.forward({ B: 1, n, ids, targets: new Int32Array(n), neighbours: nbr }, { keepLogits: true });
  return model.logits();
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) (diff = Math.max(diff, Math.abs(a[i] - b[i]))), (scale = Math.max(scale, Math.abs(b[i])));
  return diff / scale;
}

for (const [kind, rope] of [["gpt", false], ["retro", false], ["retro", true]] as const) {
  test(`decoder: ${kind}${rope ? " + retrieval_rope" : ""} incremental logits equal the full forward at every position`, () => {
    const model = randomModel(kind, rope, 7);
    const c = model.config, V = c.vocab, n = c.seq, l = n / c.chunk, kr = c.k * c.r;
    const rng = new Rng(3);
    const seqs = [0, 1].map(() => Int32Array.from({ length: n }, () => rng.int(V)));
    const nbrs = [0, 1].map(() => Int32Array.from({ length: l * kr }, () => rng.int(V)));
    const ref = seqs.map((ids, i) => fullLogits(model, ids, kind === "retro" ? nbrs[i] : undefined));
    const dec = new Decoder(model);
    const slots = [dec.newSlot(), dec.newSlot()];
    const got = [new Float32Array(n * V), new Float32Array(n * V)];
    const feedOf = (i: number, count: number): Feed => {
      const slot = slots[i], from = slot.pos;
      const neighbours = new Map(dec.chunksCompleted(from, from + count).map((u) => [u, nbrs[i].slice(u * kr, (u + 1) * kr)] as const));
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
      const p0 = slots[0].pos, p1 = slots[1].pos;
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
  });
}

test("decoder: a chunk's neighbours reach no position before the one that completes the chunk", () => {
  const model = randomModel("retro", true, 11);
  const c = model.config, V = c.vocab, kr = c.k * c.r, m = c.chunk;
  const rng = new Rng(5);
  const ids = Int32Array.from({ length: 12 }, () => rng.int(V));
  const run = (nb: Int32Array) => {
    const dec = new Decoder(model);
    const slot = dec.newSlot();
    return dec.forward([{ slot, ids, neighbours: new Map(dec.chunksCompleted(0, 12).map((u) => [u, u === 1 ? nb : new Int32Array(kr)] as const)) }], { allLogits: true });
  };
  const a = run(Int32Array.from({ length: kr }, () => rng.int(V))), b = run(Int32Array.from({ length: kr }, () => rng.int(V)));
  for (let t = 0; t < 12; t++) {
    const d = maxRelErr(a.subarray(t * V, (t + 1) * V), b.subarray(t * V, (t + 1) * V));
    // chunk 1 ends at position 2m−1 = 7: positions 7 … 10 read it (and later ones read those positions)
    if (t >= 2 * m - 1) assert.ok(d > 1e-3, `position ${t} should see chunk 1's neighbours`);
    else assert.equal(d, 0, `position ${t} must not see chunk 1's neighbours`);
  }
  const dec = new Decoder(model);
  assert.throws(() => dec.forward([{ slot: dec.newSlot(), ids }]), /completes chunk 0 but brings no neighbours/);
});
