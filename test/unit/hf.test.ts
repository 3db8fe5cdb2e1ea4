/**
 * Hugging Face GPT-2 folders in and out (src/model/hf.ts): a model exported and read back is the same model (every
 * weight, every logit); the folder has GPT2LMHeadModel's names, Conv1D layouts and GPT-2's tokenizer files; BF16
 * and F16 tensors, the prefix-less keys, a tied lm_head and the old mask buffers are read; what does not match is
 * refused by name. With python3 + torch, the peer (`../shared/peers/hf_gpt2.py`, written from the format's
 * description) computes the same logits from the exported files.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { Model } from "../../src/model/model.ts";
import { resolveModelConfig } from "../../src/model/config.ts";
import { loadModel } from "../../src/model/checkpoint.ts";
import { exportHf } from "../../src/model/hf.ts";
import { relativeDifference } from "../../src/model/logits.ts";
import { readSafetensors, tensorF32 } from "../../src/engine/safetensors.ts";
import { gpt2Tokenizer } from "../../src/tokenizer/tokenizer.ts";
import { Rng } from "../../src/util/rng.ts";
import { RetroError } from "../../src/util/errors.ts";
import { peerPython, ROOT, tmpDir } from "../helpers.ts";

const cfg = resolveModelConfig({ model: "gpt", vocab: 50257, d: 32, heads: 4, layers: 2, seq: 64, r: 64 });

function randomModel(): Model {
  const m = new Model(cfg, { seed: 5 });
  const rng = new Rng(6);
  for (let i = 0; i < m.store.data.length; i++) m.store.data[i] += 0.05 * rng.normal(); // biases and LNs non-trivial
  return m;
}

function logits(m: Model, ids: number[]): Float32Array {
  const x = Int32Array.from(ids);
  const c = m.config;
  // a Retro reads (random) neighbours: at gate 0 they must change nothing
  const neighbours =
    c.model === "retro"
      ? Int32Array.from({ length: (x.length / c.chunk) * c.k * c.r }, (_, i) => (i * 7919) % c.vocab)
      : undefined;
  m.forward({ B: 1, n: x.length, ids: x, targets: new Int32Array(x.length), neighbours }, { keepLogits: true });
  return m.logits().slice();
}

const ids = gpt2Tokenizer().encode("Call me Ishmael. Some years ago, never mind how long precisely");

test("export hf → hf:DIR: the same weights and logits; GPT2LMHeadModel names, Conv1D layouts, GPT-2's tokenizer files", () => {
  const dir = tmpDir("retro-hf-");
  const m = randomModel();
  exportHf(m, "gpt2", dir);
  const st = readSafetensors(path.join(dir, "model.safetensors"));
  assert.deepEqual(st.tensors.get("transformer.h.0.attn.c_attn.weight")!.shape, [32, 96]);
  assert.deepEqual(st.tensors.get("transformer.h.1.mlp.c_fc.weight")!.shape, [32, 128]);
  assert.ok(!st.tensors.has("lm_head.weight"), "the head is tied, not stored");
  const conf = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.equal(conf.activation_function, "gelu_new");
  assert.equal(conf.n_positions, 64);
  const vocab = JSON.parse(fs.readFileSync(path.join(dir, "vocab.json"), "utf8"));
  assert.equal(Object.keys(vocab).length, 50257);
  const the = "Ġthe"; // GPT-2's " the": the space is its byte map's Ġ
  assert.equal(vocab[the], 262);
  assert.equal(vocab["<|endoftext|>"], 50256);
  const merges = fs.readFileSync(path.join(dir, "merges.txt"), "utf8").trim().split("\n");
  assert.equal(merges[0], "#version: 0.2");
  assert.equal(merges.length, 50001);
  assert.equal(merges[1], "Ġ t");
  // read back: every parameter, and the logits
  const { model: back, tokenizer } = loadModel(`hf:${dir}`);
  assert.equal(tokenizer, "gpt2");
  for (const p of m.store.params) assert.deepEqual(back.store.get(p.name).data, p.data, p.name);
  assert.deepEqual(logits(back, ids), logits(m, ids));
});

/** the peer's logits [T, vocab] for the folder's files alone */
function peerLogits(py: string, dir: string, x = ids): Float32Array {
  const out = path.join(dir, "peer.f32");
  const r = spawnSync(py, [PEER, "logits", dir, "--ids", x.join(","), "--out", out], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return new Float32Array(fs.readFileSync(out).buffer.slice(0));
}

/** max |a − b| relative to max |b| (src/model/logits.ts), of tables of the same shape */
function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  return relativeDifference(a, b);
}

const PEER = path.join(ROOT, "..", "shared", "peers", "hf_gpt2.py");
const py = fs.existsSync(PEER) ? peerPython("torch") : null;

test("the peer (PyTorch, HF layout): its random GPT-2 imported, a GPT and a gate-0 Retro exported: same logits to 1e-5", {
  skip: py ? false : "no python3 with torch (apt-get install -y python3-torch)",
}, () => {
  const dir = tmpDir("retro-hf-peer-");
  const made = spawnSync(
    py!,
    [PEER, "make", dir, "--layers", "2", "--d", "64", "--heads", "4", "--ctx", "128", "--seed", "3"],
    {
      encoding: "utf8",
    },
  );
  assert.equal(made.status, 0, made.stderr);
  const { model: imported } = loadModel(`hf:${dir}`);
  const e1 = relErr(logits(imported, ids), peerLogits(py!, dir));
  assert.ok(e1 < 1e-5, `imported: logits differ by ${e1} (relative)`);
  const out = tmpDir("retro-hf-peer-gpt-");
  exportHf(randomModel(), "gpt2", out);
  const e2 = relErr(logits(randomModel(), ids), peerLogits(py!, out));
  assert.ok(e2 < 1e-5, `exported GPT: logits differ by ${e2}`);
  const retro = new Model(resolveModelConfig({ ...cfg, model: "retro", chunk: 16, r: 32, cca_layers: [2] }), {
    seed: 9,
  });
  retro.gate = 0;
  const rd = tmpDir("retro-hf-peer-retro-");
  exportHf(retro, "gpt2", rd);
  const x = [...ids, ...ids, ...ids].slice(0, 32); // whole chunks
  const e3 = relErr(logits(retro, x), peerLogits(py!, rd, x));
  assert.ok(e3 < 1e-5, `exported gate-0 Retro: logits differ by ${e3}`);
});

test("export hf --full: a Retro whole (encoder, CCA, null key/value, rotary flag, gate) reads back as the same Retro", () => {
  const rc = resolveModelConfig({
    ...cfg,
    model: "retro",
    chunk: 16,
    r: 32,
    cca_layers: [1, 2],
    retrieval_rope: true,
    retrieval_null_kv: true,
  });
  const m = new Model(rc, { seed: 4 });
  const rng = new Rng(8);
  for (let i = 0; i < m.store.data.length; i++) m.store.data[i] += 0.05 * rng.normal();
  m.gate = 0.75;
  const dir = tmpDir("retro-hf-full-");
  assert.throws(() => exportHf(m, "gpt2", dir), /--full/);
  const r = exportHf(m, "gpt2", dir, { full: true });
  assert.equal(r.full, true);
  const st = readSafetensors(path.join(dir, "model.safetensors"));
  assert.deepEqual(st.tensors.get("transformer.h.1.crossattention.c_attn.weight")!.shape, [32, 64]);
  assert.deepEqual(st.tensors.get("transformer.h.0.crossattention.null_kv")!.shape, [64]);
  assert.deepEqual(st.tensors.get("retro_encoder.h.0.crossattention.q_attn.weight")!.shape, [32, 32]);
  assert.ok(
    st.tensors.has("retro_encoder.h.1.mlp.c_proj.bias") && !st.tensors.has("retro_encoder.h.1.ln_cross_attn.weight"),
  );
  const conf = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.equal(conf.retro.gate, 0.75);
  assert.deepEqual(conf.retro.cca_layers, [1, 2]);
  const { model: back } = loadModel(`hf:${dir}`);
  assert.deepEqual(back.config, { ...rc, gate: 0.75 }); // the gate it was exported at
  assert.equal(back.gate, 0.75);
  for (const p of m.store.params) assert.deepEqual(back.store.get(p.name).data, p.data, p.name);
  const x = [...ids, ...ids, ...ids].slice(0, 32);
  assert.deepEqual(logits(back, x), logits(m, x));
  // the decoder alone, as a GPT-2 reader sees the folder: the Retro at gate 0
  if (py) {
    m.gate = 0;
    const e = relErr(logits(m, x), peerLogits(py, dir, x));
    assert.ok(e < 1e-5, `the peer reading the whole Retro's folder: logits differ by ${e}`);
  }
  // a retro section that does not fit is refused by name
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...conf, retro: { ...conf.retro, kk: 1 } }));
  assert.throws(() => loadModel(`hf:${dir}`), /unknown retro keys kk/);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...conf, retro: { ...conf.retro, enc_layers: 3 } }));
  assert.throws(() => loadModel(`hf:${dir}`), /no tensor retro_encoder\.h\.2/);
});

test("hf:DIR variants: BF16 / F16 tensors, keys without the prefix, a tied lm_head, mask buffers; refusals", () => {
  const dir = tmpDir("retro-hf2-");
  const m = randomModel();
  exportHf(m, "gpt2", dir);
  const st = readSafetensors(path.join(dir, "model.safetensors"));
  // BF16, no "transformer." prefix, lm_head present (= wte), the old causal-mask buffers
  const bf16 = (x: Float32Array) => {
    const u = new Uint32Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
    const out = new Uint16Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = u[i] >>> 16;
    return out;
  };
  const raw: { name: string; shape: number[]; bytes: Buffer; dtype: string }[] = [];
  for (const [name, t] of st.tensors) {
    const v = tensorF32(st, name);
    raw.push({
      name: name.replace(/^transformer\./, ""),
      shape: t.shape,
      bytes: Buffer.from(bf16(v).buffer),
      dtype: "BF16",
    });
  }
  const wte = raw.find((r) => r.name === "wte.weight")!;
  raw.push({ name: "lm_head.weight", shape: wte.shape, bytes: wte.bytes, dtype: "BF16" });
  raw.push({ name: "h.0.attn.bias", shape: [1, 1, 64, 64], bytes: Buffer.alloc(64 * 64 * 2), dtype: "BF16" });
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const r of raw) {
    header[r.name] = { dtype: r.dtype, shape: r.shape, data_offsets: [at, at + r.bytes.length] };
    at += r.bytes.length;
  }
  let h = JSON.stringify(header);
  while (h.length % 8) h += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(
    path.join(dir, "model.safetensors"),
    Buffer.concat([len, Buffer.from(h), ...raw.map((r) => r.bytes)]),
  );
  const { model: back } = loadModel(`hf:${dir}`);
  const w = m.store.get("blocks.1.mlp.proj.weight").data,
    b = back.store.get("blocks.1.mlp.proj.weight").data;
  for (let i = 0; i < w.length; i++)
    assert.ok(Math.abs(w[i] - b[i]) <= Math.abs(w[i]) * 2 ** -7 + 1e-30, `BF16 of ${w[i]}: ${b[i]}`);
  // refusals, each by name
  const conf = path.join(dir, "config.json");
  const c0 = fs.readFileSync(conf, "utf8");
  fs.writeFileSync(conf, c0.replace('"gelu_new"', '"relu"'));
  assert.throws(() => loadModel(`hf:${dir}`), /activation "relu"/);
  fs.writeFileSync(conf, c0);
  const v = JSON.parse(fs.readFileSync(path.join(dir, "vocab.json"), "utf8"));
  v["Ġthe" as string] = 7;
  fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify(v));
  assert.throws(() => loadModel(`hf:${dir}`), /not GPT-2's/);
  assert.throws(() => loadModel(`hf:${tmpDir()}`), /no config\.json/);
  // each refusal with its exit code (docs/errors.md): 6 mismatch, 5 corrupt
  const refused = (re: RegExp, code: number) => (e: unknown) =>
    e instanceof RetroError && re.test(e.message) && e.code === code;
  const v0 = JSON.parse(fs.readFileSync(path.join(dir, "vocab.json"), "utf8"));
  v0["Ġthe" as string] = 262;
  fs.writeFileSync(path.join(dir, "vocab.json"), JSON.stringify(v0));
  fs.writeFileSync(conf, c0.replace('"model_type": "gpt2"', '"model_type": "llama"'));
  assert.throws(() => loadModel(`hf:${dir}`), refused(/model_type "llama", only GPT-2/, 6));
  fs.writeFileSync(conf, c0.replace(/"n_embd": 32/, '"n_embd": 64'));
  assert.throws(() => loadModel(`hf:${dir}`), refused(/wte\.weight is \[50257,32\], expected \[50257,64\]/, 6));
  fs.writeFileSync(conf, c0.replace(/"n_layer": 2/, '"n_layer": 3'));
  assert.throws(() => loadModel(`hf:${dir}`), refused(/no tensor transformer\.h\.2\.ln_1\.weight/, 6));
  fs.writeFileSync(conf, c0);
  loadModel(`hf:${dir}`); // whole again
  const weights = path.join(dir, "model.safetensors");
  fs.truncateSync(weights, fs.statSync(weights).size - 100);
  assert.throws(
    () => loadModel(`hf:${dir}`),
    (e: unknown) => e instanceof RetroError && e.code === 5,
  );
  // a Retro reading its neighbours is not a GPT
  const retro = new Model(resolveModelConfig({ ...cfg, model: "retro", cca_layers: [2] }), { seed: 1 });
  assert.throws(() => exportHf(retro, "gpt2", tmpDir()), /--gate 0/);
  assert.throws(() => exportHf(m, "bpe300-abc", tmpDir()), /tokenizer gpt2/);
  // …its decoder at gate 0 is, and reads back as that GPT
  retro.gate = 0;
  const rd = tmpDir("retro-hf3-");
  exportHf(retro, "gpt2", rd);
  const g = loadModel(`hf:${rd}`).model;
  assert.deepEqual(g.store.get("blocks.1.attn.q.weight").data, retro.store.get("blocks.1.attn.q.weight").data);
});
