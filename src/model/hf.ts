/**
 * Hugging Face GPT-2 checkpoints in and out (`hf:DIR`): a GPT2LMHeadModel folder — config.json, model.safetensors,
 * the tokenizer (vocab.json + merges.txt, or tokenizer.json) — read as a retro-ts GPT (the decoder of a Retro
 * when Retro-fitting), and a retro-ts GPT (or a Retro's decoder at CCA gate 0) written as one; a whole Retro goes
 * out and back in the same folder layout with its retrieval part under the key map of `keyMap`.
 *
 * The architectures are the same (llm.c's GPT-2: learned positions, pre-LayerNorm with ε 1e-5, GELU with the tanh
 * approximation, a head tied to the token embedding, biases everywhere), so the map is names and layouts only:
 *   transformer.wte / wpe / ln_f                    → wte / wpe / lnf
 *   transformer.h.N.ln_1 / ln_2                     → blocks.N.ln1 / ln2
 *   h.N.attn.c_attn  Conv1D [D, 3D] (q | k | v)     → blocks.N.attn.q [D, D] and attn.kv [2D, D] (k rows, v rows)
 *   h.N.attn.c_proj  Conv1D [D, D]                  → blocks.N.attn.o [D, D]
 *   h.N.mlp.c_fc / c_proj  Conv1D [D, 4D] / [4D, D] → blocks.N.mlp.fc [4D, D] / proj [D, 4D]
 * Conv1D stores [in, out]: every matrix is transposed. Keys are read with or without the `transformer.` prefix,
 * the `h.N.attn.bias` / `masked_bias` buffers of older files are ignored, `lm_head.weight` must equal `wte` (tied)
 * when present, and F16 / BF16 tensors are widened to F32. Anything the architecture does not match (another
 * activation, ε, untied head, a non-GPT-2 tokenizer) is refused by name, never approximated.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire } from "node:module";
import { RetroError } from "../util/errors.ts";
import { readJson, writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";
import { warn } from "../util/progress.ts";
import { readSafetensors, writeSafetensors, type SafetensorsFile, type TensorOut } from "../engine/safetensors.ts";
import { MODEL_SETTINGS, positions, resolveModelConfig, type ModelConfig } from "./config.ts";
import { paramSpecs } from "./params.ts";
import type { Model } from "./model.ts";

export const HF_PREFIX = "hf:";

/** Is this checkpoint reference a Hugging Face folder (`hf:DIR`)? */
export function isHfRef(ref: string): boolean {
  return ref.startsWith(HF_PREFIX);
}

/** `hf:DIR` → DIR (absolute) */
export function hfDir(ref: string): string {
  const dir = path.resolve(ref.slice(HF_PREFIX.length));
  if (!fs.existsSync(path.join(dir, "config.json")))
    throw new RetroError("notFound", `${ref}: no config.json (not a Hugging Face model folder)`);
  return dir;
}

interface Gpt2Config {
  n_embd: number;
  n_head: number;
  n_layer: number;
  n_positions?: number;
  n_ctx?: number;
  vocab_size: number;
  layer_norm_epsilon?: number;
  activation_function?: string;
  tie_word_embeddings?: boolean;
  model_type?: string;
  scale_attn_weights?: boolean;
  scale_attn_by_inverse_layer_idx?: boolean;
  reorder_and_upcast_attn?: boolean;
  /** a Retro exported whole: the model config's Retro keys (RETRO_KEYS) */
  retro?: Record<string, unknown>;
}

/** the model config's keys that GPT-2's config.json does not carry: a whole Retro's `retro` section */
const GPT2_KEYS = new Set(["model", "vocab", "d", "heads", "layers"]);
const RETRO_KEYS = Object.keys(MODEL_SETTINGS).filter((k) => !GPT2_KEYS.has(k));

/** The retro-ts model config of a GPT2LMHeadModel folder, or a clear error naming what does not match. */
export function readHfConfig(dir: string): ModelConfig {
  const c = readJson<Gpt2Config>(path.join(dir, "config.json"), "Hugging Face config");
  const where = `${dir}/config.json`;
  if (c.model_type !== undefined && c.model_type !== "gpt2")
    throw new RetroError("mismatch", `${where}: model_type "${c.model_type}", only GPT-2 (gpt2) is read`);
  const act = c.activation_function ?? "gelu_new";
  if (act !== "gelu_new" && act !== "gelu_pytorch_tanh")
    throw new RetroError(
      "mismatch",
      `${where}: activation "${act}"; the engine's GELU is the tanh approximation (gelu_new)`,
    );
  if ((c.layer_norm_epsilon ?? 1e-5) !== 1e-5)
    throw new RetroError("mismatch", `${where}: layer_norm_epsilon ${c.layer_norm_epsilon}; the engine's is 1e-5`);
  if (c.tie_word_embeddings === false)
    throw new RetroError("mismatch", `${where}: an untied head; retro-ts ties the head to the token embedding`);
  if (c.scale_attn_weights === false || c.scale_attn_by_inverse_layer_idx || c.reorder_and_upcast_attn)
    throw new RetroError("mismatch", `${where}: attention scaling options other than GPT-2's are not read`);
  for (const k of ["n_embd", "n_head", "n_layer", "vocab_size"] as const)
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new RetroError("corrupt", `${where}: ${k} is missing or invalid`);
  const seq = c.n_positions ?? c.n_ctx;
  if (!Number.isInteger(seq)) throw new RetroError("corrupt", `${where}: n_positions is missing`);
  const gpt2 = { vocab: c.vocab_size, d: c.n_embd, heads: c.n_head, layers: c.n_layer };
  if (c.retro !== undefined) {
    if (typeof c.retro !== "object" || c.retro === null || Array.isArray(c.retro))
      throw new RetroError("corrupt", `${where}: "retro" is not an object`);
    const unknown = Object.keys(c.retro).filter((k) => !RETRO_KEYS.includes(k));
    if (unknown.length) throw new RetroError("mismatch", `${where}: unknown retro keys ${unknown.join(", ")}`);
    const cfg = resolveModelConfig({ ...c.retro, ...gpt2, model: "retro" });
    if (positions(cfg) !== seq)
      throw new RetroError("mismatch", `${where}: n_positions ${seq}, but the Retro has ${positions(cfg)} positions`);
    return cfg;
  }
  // learned positions are max(seq, r): a GPT's neighbour length must not add rows GPT-2 does not have
  return resolveModelConfig({ ...gpt2, model: "gpt", seq, r: Math.min(128, seq as number) });
}

/** IEEE half / bfloat16 → float32 */
function widen(dtype: string, raw: Buffer): Float32Array {
  const out = new Float32Array(raw.length / (dtype === "F32" ? 4 : 2));
  if (dtype === "F32") Buffer.from(out.buffer).set(raw);
  else if (dtype === "BF16") {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < out.length; i++) u[i] = raw.readUInt16LE(2 * i) << 16;
  } else if (dtype === "F16") {
    for (let i = 0; i < out.length; i++) {
      const h = raw.readUInt16LE(2 * i);
      const s = h & 0x8000 ? -1 : 1,
        e = (h >> 10) & 0x1f,
        f = h & 0x3ff;
      out[i] =
        e === 0
          ? s * 2 ** -14 * (f / 1024)
          : e === 31
            ? f
              ? Number.NaN
              : s * Infinity
            : s * 2 ** (e - 15) * (1 + f / 1024);
    }
  } else throw new RetroError("mismatch", `tensor dtype ${dtype}: only F32, F16 and BF16 are read`);
  return out;
}

function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}

/**
 * One tensor of the folder and the retro-ts parameters it holds: `ours` concatenated along their first axis (q then
 * k, v: GPT-2's c_attn), transposed when `conv1d` (Conv1D stores [in, out]).
 */
interface KeyMapEntry {
  hf: string;
  ours: string[];
  /** the folder's shape */
  shape: number[];
  conv1d: boolean;
}

/**
 * The key map, both ways. The decoder is GPT2LMHeadModel's (module comment). A Retro exported whole adds its
 * retrieval part in GPT-2's own naming for cross-attention (`add_cross_attention` blocks) and Conv1D layouts:
 *   transformer.h.N.ln_cross_attn                  ← blocks.N.lnc            (CCA layer N+1)
 *   transformer.h.N.crossattention.q_attn [D, D]   ← blocks.N.xattn.q
 *   transformer.h.N.crossattention.c_attn [D, 2D]  ← blocks.N.xattn.kv       (k | v)
 *   transformer.h.N.crossattention.c_proj [D, D]   ← blocks.N.xattn.o
 *   transformer.h.N.crossattention.null_kv [2D]    ← blocks.N.xattn.null_kv  (retrieval_null_kv)
 *   retro_encoder.h.J.{ln_1, attn, ln_2, mlp}      ← encoder.J.*             (as the decoder's blocks)
 *   retro_encoder.h.0.{ln_cross_attn, crossattention.*} ← encoder.0.lnx / xattn (the encoder reading the chunk)
 * and config.json's `retro` section (the Retro keys of the model config: chunk, k, r, cca_layers, gate, …).
 */
function keyMap(c: ModelConfig, wpeRows: number): KeyMapEntry[] {
  const D = c.d;
  const out: KeyMapEntry[] = [
    { hf: "transformer.wte.weight", ours: ["wte.weight"], shape: [c.vocab, D], conv1d: false },
    { hf: "transformer.wpe.weight", ours: ["wpe.weight"], shape: [wpeRows, D], conv1d: false },
  ];
  const vec = (hf: string, ours: string, n: number) => out.push({ hf, ours: [ours], shape: [n], conv1d: false });
  const ln = (hf: string, ours: string) => {
    vec(`${hf}.weight`, `${ours}.weight`, D);
    vec(`${hf}.bias`, `${ours}.bias`, D);
  };
  const conv = (hf: string, ours: string[], inp: number, outDim: number) => {
    out.push({ hf: `${hf}.weight`, ours: ours.map((o) => `${o}.weight`), shape: [inp, outDim], conv1d: true });
    out.push({ hf: `${hf}.bias`, ours: ours.map((o) => `${o}.bias`), shape: [outDim], conv1d: false });
  };
  const block = (h: string, b: string) => {
    ln(`${h}.ln_1`, `${b}.ln1`);
    conv(`${h}.attn.c_attn`, [`${b}.attn.q`, `${b}.attn.kv`], D, 3 * D);
    conv(`${h}.attn.c_proj`, [`${b}.attn.o`], D, D);
    ln(`${h}.ln_2`, `${b}.ln2`);
    conv(`${h}.mlp.c_fc`, [`${b}.mlp.fc`], D, 4 * D);
    conv(`${h}.mlp.c_proj`, [`${b}.mlp.proj`], 4 * D, D);
  };
  const cross = (h: string, b: string, lnName: string) => {
    ln(`${h}.ln_cross_attn`, `${b}.${lnName}`);
    conv(`${h}.crossattention.q_attn`, [`${b}.xattn.q`], D, D);
    conv(`${h}.crossattention.c_attn`, [`${b}.xattn.kv`], D, 2 * D);
    conv(`${h}.crossattention.c_proj`, [`${b}.xattn.o`], D, D);
  };
  const cca = new Set(c.model === "retro" ? c.cca_layers : []);
  for (let i = 0; i < c.layers; i++) {
    block(`transformer.h.${i}`, `blocks.${i}`);
    if (cca.has(i + 1)) {
      cross(`transformer.h.${i}`, `blocks.${i}`, "lnc");
      if (c.retrieval_null_kv) vec(`transformer.h.${i}.crossattention.null_kv`, `blocks.${i}.xattn.null_kv`, 2 * D);
    }
  }
  if (cca.size)
    for (let j = 0; j < c.enc_layers; j++) {
      block(`retro_encoder.h.${j}`, `encoder.${j}`);
      if (j === 0) cross(`retro_encoder.h.${j}`, `encoder.${j}`, "lnx");
    }
  ln("transformer.ln_f", "lnf");
  return out;
}

/**
 * The weights of a GPT2LMHeadModel folder (or a Retro exported whole) under retro-ts names, F32, as an in-memory
 * safetensors file that `loadWeights` reads like any checkpoint (shapes checked there).
 */
export function readHfWeights(dir: string, cfg: ModelConfig): SafetensorsFile {
  const file = path.join(dir, "model.safetensors");
  if (!fs.existsSync(file))
    throw new RetroError("notFound", `${dir}: no model.safetensors (pytorch_model.bin is not read: convert it first)`);
  const f = readSafetensors(file);
  const src = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const [name, t] of f.tensors) {
    // keys with or without the `transformer.` prefix (the encoder's always carry theirs)
    const key = /^(transformer|retro_encoder|lm_head)\./.test(name) ? name : `transformer.${name}`;
    if (/^transformer\.h\.\d+\.attn\.(bias|masked_bias)$/.test(key)) continue; // causal-mask buffers, not weights
    src.set(key, widen(t.dtype, f.data.subarray(t.begin, t.end)));
    shapes.set(key, t.shape);
  }
  const what = cfg.model === "retro" ? `a Retro of ${cfg.layers} layers` : `a GPT2LMHeadModel of ${cfg.layers} layers`;
  const take = (key: string, shape: number[]): Float32Array => {
    const x = src.get(key);
    if (!x) throw new RetroError("mismatch", `${file}: no tensor ${key} (${what})`);
    if (shapes.get(key)!.join(",") !== shape.join(","))
      throw new RetroError("mismatch", `${file}: ${key} is [${shapes.get(key)}], expected [${shape}]`);
    src.delete(key);
    return x;
  };
  const out = new Map<string, TensorOut>();
  const ourShape = new Map(paramSpecs(cfg).map((p) => [p.name, p.shape]));
  for (const e of keyMap(cfg, positions(cfg))) {
    let x = take(e.hf, e.shape);
    if (e.conv1d) x = transpose(x, e.shape[0], e.shape[1]); // [out, in]
    let at = 0;
    for (const name of e.ours) {
      const shape = ourShape.get(name)!;
      const n = shape.reduce((a, b) => a * b, 1);
      out.set(name, { dtype: "F32", shape, data: x.slice(at, at + n) });
      at += n;
    }
  }
  const wte = out.get("wte.weight")!.data as Float32Array;
  const head = src.get("lm_head.weight");
  if (head) {
    if (head.length !== wte.length || head.some((v, i) => v !== wte[i]))
      throw new RetroError("mismatch", `${file}: lm_head.weight differs from wte (an untied head is not read)`);
    src.delete("lm_head.weight");
  }
  if (src.size)
    throw new RetroError(
      "mismatch",
      `${file}: tensors that are not ${what}'s: ${[...src.keys()].slice(0, 5).join(", ")}`,
    );
  return inMemory(file, out);
}

/** tensors as a SafetensorsFile in memory (what `loadWeights` reads) */
function inMemory(file: string, tensors: Map<string, TensorOut>): SafetensorsFile {
  const parts: Buffer[] = [];
  const infos = new Map<string, { dtype: "F32"; shape: number[]; begin: number; end: number }>();
  let at = 0;
  for (const [name, t] of tensors) {
    const d = t.data as Float32Array;
    const bytes = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    infos.set(name, { dtype: "F32", shape: t.shape, begin: at, end: at + bytes.length });
    parts.push(bytes);
    at += bytes.length;
  }
  return { path: file, metadata: { format: "hf-gpt2" }, tensors: infos, data: Buffer.concat(parts) };
}

// ---- the GPT-2 tokenizer's files (vocab.json, merges.txt) from the ranks js-tiktoken ships ----

/** GPT-2's reversible byte → printable character map (each byte a character vocab.json can hold) */
function byteChars(): string[] {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const out = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++);
  return out;
}

let gpt2Vocab: { tokens: Buffer[]; strings: string[] } | null = null;
/** GPT-2's 50,257 tokens as bytes and as vocab.json strings, by id */
function gpt2Tokens(): { tokens: Buffer[]; strings: string[] } {
  if (gpt2Vocab) return gpt2Vocab;
  const require = createRequire(import.meta.url);
  const ranks = require("js-tiktoken/ranks/gpt2") as { default?: { bpe_ranks: string }; bpe_ranks?: string };
  const text = (ranks.default ?? ranks).bpe_ranks as string;
  const tokens: Buffer[] = [];
  for (const line of text.split("\n")) {
    const [, offset, ...b64] = line.split(" ");
    b64.forEach((t, i) => (tokens[Number(offset) + i] = Buffer.from(t, "base64")));
  }
  tokens[50256] = Buffer.from("<|endoftext|>");
  const map = byteChars();
  const strings = tokens.map((t, i) => (i === 50256 ? "<|endoftext|>" : [...t].map((b) => map[b]).join("")));
  gpt2Vocab = { tokens, strings };
  return gpt2Vocab;
}

/**
 * The tokenizer of a Hugging Face folder, checked to be GPT-2's (the one tokenizer both sides have): every entry
 * of vocab.json (or tokenizer.json's model.vocab) must name the same id. Returns the retro-ts tokenizer id.
 */
export function hfTokenizerId(dir: string): string {
  const { strings } = gpt2Tokens();
  let vocab: Record<string, number> | null = null;
  if (fs.existsSync(path.join(dir, "vocab.json")))
    vocab = readJson<Record<string, number>>(path.join(dir, "vocab.json"), "Hugging Face vocab");
  else if (fs.existsSync(path.join(dir, "tokenizer.json")))
    vocab =
      readJson<{ model?: { vocab?: Record<string, number> } }>(path.join(dir, "tokenizer.json"), "tokenizer").model
        ?.vocab ?? null;
  if (!vocab) {
    warn(`${dir}: no vocab.json or tokenizer.json; taking its ${strings.length}-id vocabulary for GPT-2's`);
    return "gpt2";
  }
  const entries = Object.entries(vocab);
  const wrong = entries.find(([s, id]) => strings[id] !== s);
  if (entries.length !== strings.length || wrong)
    throw new RetroError(
      "mismatch",
      `${dir}: its tokenizer is not GPT-2's (${entries.length} entries` +
        `${wrong ? `; "${wrong[0]}" is ${wrong[1]}` : ""}); ` +
        `retro-ts reads GPT-2-tokenized models, with a database built --tokenizer gpt2`,
    );
  return "gpt2";
}

/** merges.txt of GPT-2: each merged token's two parts, in rank order (recovered from the ranks by BPE itself) */
function gpt2Merges(): string[] {
  const { tokens, strings } = gpt2Tokens();
  const rank = new Map(tokens.slice(0, 50256).map((t, i) => [t.toString("latin1"), i]));
  const lines: string[] = [];
  for (let r = 256; r < 50256; r++) {
    // BPE with the merges ranked before r: what remains are the two tokens merged into r
    let parts = [...tokens[r]].map((b) => Buffer.from([b]));
    for (;;) {
      let best = -1,
        at = -1;
      for (let i = 0; i + 1 < parts.length; i++) {
        const k = rank.get(Buffer.concat([parts[i], parts[i + 1]]).toString("latin1"));
        if (k !== undefined && k < r && (best < 0 || k < best)) (best = k), (at = i);
      }
      if (at < 0) break;
      parts = [...parts.slice(0, at), Buffer.concat([parts[at], parts[at + 1]]), ...parts.slice(at + 2)];
    }
    if (parts.length !== 2) throw new Error(`GPT-2 rank ${r} is not one merge of two tokens`);
    lines.push(parts.map((p) => strings[rank.get(p.toString("latin1"))!]).join(" "));
  }
  return lines;
}

/**
 * Write a GPT (or a Retro's decoder, its CCA gate at 0: InstructRetro's decoder alone is a GPT) as a
 * GPT2LMHeadModel folder `transformers` loads with `from_pretrained`: config.json, model.safetensors (the
 * `transformer.` keys, Conv1D layouts; the head tied, not stored), vocab.json + merges.txt. With `full`, a Retro
 * whole: the same folder plus its encoder and CCA under the key map of `keyMap` and config.json's `retro` section
 * (`hf:DIR` reads it back as that Retro; no `transformers` class reads the retrieval part: GPT2LMHeadModel loads the
 * decoder and reports the rest as unused weights).
 */
export function exportHf(
  model: Model,
  tokenizerId: string,
  out: string,
  opts: { full?: boolean } = {},
): { tensors: number; bytes: number; full: boolean } {
  const c = model.config;
  if (tokenizerId !== "gpt2")
    throw new RetroError(
      "mismatch",
      `the model was trained with tokenizer ${tokenizerId}; a GPT2LMHeadModel folder carries GPT-2's tokenizer ` +
        `files, so only a model of a database built --tokenizer gpt2 is exported`,
    );
  const full = c.model === "retro" && Boolean(opts.full);
  if (c.model === "retro" && model.gate !== 0 && !full)
    throw new RetroError(
      "usage",
      "a Retro reading its neighbours (CCA gate ≠ 0) is not a GPT: export its decoder with --gate 0 (InstructRetro's " +
        "use), or the whole Retro with --full (its encoder and CCA under retro-ts's documented key map)",
    );
  const D = c.d;
  const rows = full ? positions(c) : c.seq;
  const t = new Map<string, TensorOut>();
  const gptPart = full ? c : { ...c, model: "gpt" as const, cca_layers: [] };
  for (const e of keyMap(gptPart, rows)) {
    const parts = e.ours.map((n) => model.store.get(n).data);
    const cat = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) cat.set(p, at), (at += p.length);
    const data =
      e.hf === "transformer.wpe.weight"
        ? cat.slice(0, rows * D)
        : e.conv1d
          ? transpose(cat, e.shape[1], e.shape[0])
          : cat;
    t.set(e.hf, { dtype: "F32", shape: e.shape, data });
  }
  fs.mkdirSync(out, { recursive: true });
  writeSafetensors(path.join(out, "model.safetensors"), t, { format: "pt" });
  const retro = full
    ? Object.fromEntries(RETRO_KEYS.map((k) => [k, k === "gate" ? model.gate : c[k as keyof ModelConfig]]))
    : null;
  writeJsonAtomic(path.join(out, "config.json"), {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    vocab_size: c.vocab,
    n_positions: rows,
    n_ctx: rows,
    n_embd: D,
    n_head: c.heads,
    n_layer: c.layers,
    n_inner: null,
    activation_function: "gelu_new",
    layer_norm_epsilon: 1e-5,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    initializer_range: 0.02,
    bos_token_id: 50256,
    eos_token_id: 50256,
    tie_word_embeddings: true,
    torch_dtype: "float32",
    ...(retro ? { retro } : {}),
  });
  const { strings } = gpt2Tokens();
  writeJsonAtomic(path.join(out, "vocab.json"), Object.fromEntries(strings.map((s, i) => [s, i])));
  writeFileAtomic(path.join(out, "merges.txt"), `#version: 0.2\n${gpt2Merges().join("\n")}\n`);
  writeJsonAtomic(path.join(out, "tokenizer_config.json"), {
    tokenizer_class: "GPT2Tokenizer",
    model_max_length: c.seq,
    bos_token: "<|endoftext|>",
    eos_token: "<|endoftext|>",
    unk_token: "<|endoftext|>",
    add_prefix_space: false,
  });
  return { tensors: t.size, bytes: fs.statSync(path.join(out, "model.safetensors")).size, full };
}
