/**
 * The model config: one typed record for GPT and Retro, with the same keys as the PyTorch peer
 * (`../shared/peers/torch_retro_step.py`), so that a config and its weights move between the two.
 */
import { RetroError } from "../util/errors.ts";

export interface ModelConfig {
  model: "gpt" | "retro";
  vocab: number;
  /** model width */
  d: number;
  heads: number;
  /** decoder layers */
  layers: number;
  /** longest decoder sequence (learned positions: max(seq, r) of them) */
  seq: number;
  /** retrieval chunk length m */
  chunk: number;
  /** neighbours per chunk */
  k: number;
  /** tokens per neighbour (chunk + continuation) */
  r: number;
  /** Retro encoder layers */
  enc_layers: number;
  /** 1-based decoder layers with chunked cross-attention (Retro only) */
  cca_layers: number[];
  /** CCA output scale: 1 in pretraining, 0 bypasses retrieval */
  gate: number;
  /**
   * Rotary positions inside the retrieval path (RETRO §B.1.2's relative encoding, as RETRO-pytorch does it):
   * in CCA the queries of the shifted window sit at positions m−1 … 2m−2 and each neighbour's keys at 0 … r−1,
   * i.e. a neighbour is taken to start where its chunk starts, so "the token after mine in the neighbour" is
   * always at relative offset +1; the encoder's self-attention rotates its queries and keys at 0 … r−1. The
   * learned absolute positions stay. false (a config without the key: older checkpoints, the peer's dumps)
   * is the model without them.
   */
  retrieval_rope: boolean;
  /**
   * A learned null key/value in every CCA (as RETRO-pytorch has): each chunk's queries attend over its k·r
   * neighbour tokens and one more key/value, a parameter per CCA layer (`xattn.null_kv`, [2d]: key then value,
   * not rotated), so a chunk whose neighbours say nothing useful can put its attention on it. false (a config
   * without the key) is the model without it.
   */
  retrieval_null_kv: boolean;
}

export const DEFAULT_MODEL: ModelConfig = {
  model: "gpt", vocab: 8192, d: 256, heads: 4, layers: 4, seq: 256, chunk: 64, k: 2, r: 128,
  enc_layers: 2, cca_layers: [], gate: 1, retrieval_rope: false, retrieval_null_kv: false,
};

/** base of the rotary angles (RoFormer's) */
export const ROPE_BASE = 10000;

/** Megatron's rule: first CCA layer 6 (≤ 15 layers) or 9, then every third layer to the end. */
export function defaultCcaLayers(layers: number): number[] {
  const first = layers <= 15 ? 6 : 9;
  const out: number[] = [];
  for (let i = first; i <= layers; i += 3) out.push(i);
  return out.length ? out : [layers];
}

/** keys of the peer's config that describe a run, not the model: accepted and ignored when reading a dump */
export const RUN_KEYS = ["batch", "threads", "warmup", "steps", "seed", "dump"] as const;

/**
 * Validate a partial config over the defaults. Unknown keys and bad values are refused with their names.
 * `ignore` lists keys to drop silently (the peer's run settings).
 */
export function resolveModelConfig(input: Record<string, unknown>, ignore: readonly string[] = []): ModelConfig {
  const known = new Set(Object.keys(DEFAULT_MODEL));
  const unknown = Object.keys(input).filter((k) => !known.has(k) && !ignore.includes(k));
  if (unknown.length) throw new RetroError("usage", `unknown model config key(s): ${unknown.join(", ")} (known: ${[...known].join(", ")})`);
  const c: Record<string, unknown> = { ...DEFAULT_MODEL, cca_layers: undefined };
  for (const k of known) if (input[k] !== undefined && input[k] !== null) c[k] = input[k];
  if (c.model !== "gpt" && c.model !== "retro") throw new RetroError("usage", `model config: model must be "gpt" or "retro", got ${JSON.stringify(c.model)}`);
  for (const k of ["vocab", "d", "heads", "layers", "seq", "chunk", "k", "r", "enc_layers"]) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new RetroError("usage", `model config: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (typeof c.gate !== "number" || !Number.isFinite(c.gate)) throw new RetroError("usage", `model config: gate must be a number`);
  for (const k of ["retrieval_rope", "retrieval_null_kv"]) {
    if (typeof c[k] !== "boolean") throw new RetroError("usage", `model config: ${k} must be true or false, got ${JSON.stringify(c[k])}`);
  }
  const cfg = c as unknown as ModelConfig;
  if (cfg.d % cfg.heads) throw new RetroError("usage", `model config: d (${cfg.d}) must be a multiple of heads (${cfg.heads})`);
  if (cfg.model === "gpt") cfg.cca_layers = [];
  else {
    if (c.cca_layers === undefined) cfg.cca_layers = defaultCcaLayers(cfg.layers);
    const L = cfg.cca_layers;
    if (!Array.isArray(L) || !L.length || L.some((x) => !Number.isInteger(x) || x < 1 || x > cfg.layers)) {
      throw new RetroError("usage", `model config: cca_layers must be a non-empty list of layers in 1..${cfg.layers}, got ${JSON.stringify(L)}`);
    }
    cfg.cca_layers = [...new Set(L)].sort((a, b) => a - b);
    if (cfg.retrieval_rope && (cfg.d / cfg.heads) % 2) throw new RetroError("usage", `model config: retrieval_rope needs an even head width, d/heads = ${cfg.d / cfg.heads}`);
    if (cfg.seq % cfg.chunk) throw new RetroError("usage", `model config: seq (${cfg.seq}) must be a multiple of chunk (${cfg.chunk}) for Retro`);
  }
  return { model: cfg.model, vocab: cfg.vocab, d: cfg.d, heads: cfg.heads, layers: cfg.layers, seq: cfg.seq, chunk: cfg.chunk,
    k: cfg.k, r: cfg.r, enc_layers: cfg.enc_layers, cca_layers: cfg.cca_layers, gate: cfg.gate,
    retrieval_rope: cfg.model === "retro" && cfg.retrieval_rope, retrieval_null_kv: cfg.model === "retro" && cfg.retrieval_null_kv };
}

/** Number of learned positions (the peer's rule, so that GPT and Retro checkpoints share the table). */
export function positions(c: ModelConfig): number {
  return Math.max(c.seq, c.r);
}
