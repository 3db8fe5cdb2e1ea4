/**
 * The model config: one typed record for GPT and Retro, with the same keys as the PyTorch peer
 * (`../shared/peers/torch_retro_step.py`), so that a config and its weights move between the two.
 */
import { RetroError } from "../util/errors.ts";
import { defaultsOf, defineSettings, resolveSettings, type SettingValues } from "../util/settings.ts";

/** Every model key, declared once: the model's type, defaults, validation, the flags of `retro train` and the docs. */
export const MODEL_SETTINGS = defineSettings({
  model: { kind: "choice", choices: ["gpt", "retro"], default: "gpt", help: "gpt or retro" },
  vocab: { kind: "int", min: 1, default: 8192, flag: false, help: "vocabulary size (from the database's tokenizer)" },
  d: { kind: "int", min: 1, default: 256, help: "model width" },
  heads: { kind: "int", min: 1, default: 4, help: "attention heads" },
  layers: { kind: "int", min: 1, default: 4, help: "decoder layers" },
  seq: { kind: "int", min: 1, default: 256, help: "longest decoder sequence (learned positions: max(seq, r) of them)" },
  chunk: { kind: "int", min: 1, default: 64, flag: false, help: "retrieval chunk length m (from the database)" },
  k: { kind: "int", min: 1, default: 2, help: "neighbours per chunk" },
  // The paper's r = 2m (a chunk and its continuation): absent from a config, r follows the chunk length, so a
  // database of 16-token chunks gets 32-token neighbours, not 128 (which would encode 8 chunks per neighbour: 4× the
  // encoder work and a continuation that runs far past the chunk a neighbour predicts). `default` is the value at
  // the default chunk (64), the peer's.
  r: {
    kind: "int",
    min: 1,
    default: 128,
    defaultText: "2 × chunk",
    help: "tokens per neighbour (chunk + continuation)",
  },
  enc_layers: { kind: "int", min: 1, default: 2, help: "Retro encoder layers" },
  cca_layers: {
    kind: "intList",
    min: 1,
    default: [],
    help:
      "1-based decoder layers with chunked cross-attention, e.g. 3,6 (Retro; empty: every 2nd from 2 below 6 " +
      "layers, else Megatron's placement)",
  },
  gate: {
    kind: "num",
    default: 1,
    help: "CCA output scale: 1 in pretraining, 0 bypasses retrieval (the decoder alone)",
  },
  // Rotary positions inside the retrieval path (RETRO §B.1.2's relative encoding, as RETRO-pytorch does it): in CCA
  // the queries of the shifted window sit at positions m−1 … 2m−2 and each neighbour's keys at 0 … r−1, i.e. a
  // neighbour is taken to start where its chunk starts, so "the token after mine in the neighbour" is always at
  // relative offset +1; the encoder's self-attention rotates its queries and keys at 0 … r−1. The learned absolute
  // positions stay. false (a config without the key: older checkpoints, the peer's dumps) is the model without them.
  retrieval_rope: {
    kind: "bool",
    default: false,
    negatable: true,
    help: "Retro: rotary positions in CCA and the encoder (new Retro runs: on, see NEW_RETRO)",
  },
  // A learned null key/value in every CCA (as RETRO-pytorch has): each chunk's queries attend over its k·r neighbour
  // tokens and one more key/value, a parameter per CCA layer (`xattn.null_kv`, [2d]: key then value, not rotated).
  retrieval_null_kv: {
    kind: "bool",
    default: false,
    negatable: true,
    help: "Retro: a learned null key/value in every CCA",
  },
});

export type ModelConfig = SettingValues<typeof MODEL_SETTINGS>;

export const DEFAULT_MODEL: ModelConfig = defaultsOf(MODEL_SETTINGS);

/**
 * What a new Retro model of `retro train` (from scratch or Retro-fitted from a GPT) takes over the plain defaults:
 * rotary positions in the retrieval path (experiments/copy-task.ts: without them a Retro-fit does not learn to copy
 * even an exact twin). A Retro checkpoint keeps what it was trained with; the plain defaults stay the paper's model
 * and the PyTorch peer's.
 */
export const NEW_RETRO: Partial<ModelConfig> = { retrieval_rope: true };

/** base of the rotary angles (RoFormer's) */
export const ROPE_BASE = 10000;

/**
 * Where CCA goes when a config does not say. Megatron's rule from 6 layers up: first CCA layer 6 (≤ 15 layers) or 9,
 * then every third layer to the end. Below 6 layers (the sizes this machine trains) every second layer from 2
 * ([2, 4] of 4): Megatron's rule would leave only the last layer, whose CCA output has one MLP left to reach the
 * logits — on the twin corpus a 4-layer Retro-fit with CCA in layer 4 alone had not finished its plateau after 400
 * steps (held-out ppl 0.71× GPT-fitting's; [2, 4]: 0.43×, experiments/twin-defaults.sh), and every experiment and
 * the demo had chosen [2, 4] by hand.
 */
export function defaultCcaLayers(layers: number): number[] {
  if (layers < 6) {
    const out: number[] = [];
    for (let i = 2; i <= layers; i += 2) out.push(i);
    return out.length ? out : [layers];
  }
  const first = layers <= 15 ? 6 : 9;
  const out: number[] = [];
  for (let i = first; i <= layers; i += 3) out.push(i);
  return out;
}

/** keys of the peer's config that describe a run, not the model: accepted and ignored when reading a dump */
export const RUN_KEYS = ["batch", "threads", "warmup", "steps", "seed", "dump"] as const;

/**
 * Validate a partial config over the defaults. Unknown keys and bad values are refused with their names.
 * `ignore` lists keys to drop silently (the peer's run settings).
 */
export function resolveModelConfig(input: Record<string, unknown>, ignore: readonly string[] = []): ModelConfig {
  const given = Object.fromEntries(Object.entries(input).filter(([k]) => !ignore.includes(k)));
  const autoCca = given.cca_layers === undefined || given.cca_layers === null;
  const autoR = given.r === undefined || given.r === null;
  const cfg = resolveSettings(MODEL_SETTINGS, given, "model config");
  if (autoR) cfg.r = 2 * cfg.chunk;
  if (cfg.d % cfg.heads)
    throw new RetroError("usage", `model config: d (${cfg.d}) must be a multiple of heads (${cfg.heads})`);
  if (cfg.model === "gpt") return { ...cfg, cca_layers: [], retrieval_rope: false, retrieval_null_kv: false };
  if (autoCca) cfg.cca_layers = defaultCcaLayers(cfg.layers);
  const L = cfg.cca_layers;
  if (!L.length || L.some((x) => x > cfg.layers)) {
    throw new RetroError(
      "usage",
      `model config: cca_layers must be a non-empty list of layers in 1..${cfg.layers}, got ${JSON.stringify(L)}`,
    );
  }
  cfg.cca_layers = [...new Set(L)].sort((a, b) => a - b);
  if (cfg.retrieval_rope && (cfg.d / cfg.heads) % 2)
    throw new RetroError(
      "usage",
      `model config: retrieval_rope needs an even head width, d/heads = ${cfg.d / cfg.heads}`,
    );
  if (cfg.seq % cfg.chunk)
    throw new RetroError(
      "usage",
      `model config: seq (${cfg.seq}) must be a multiple of chunk (${cfg.chunk}) for Retro`,
    );
  return cfg;
}

/** Number of learned positions (the peer's rule, so that GPT and Retro checkpoints share the table). */
export function positions(c: ModelConfig): number {
  return Math.max(c.seq, c.r);
}
