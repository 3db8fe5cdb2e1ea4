/**
 * Parity with the PyTorch peer: load a dump written by `torch_retro_step.py` with "dump" (weights, inputs,
 * logits, loss and every gradient of one step), run the same forward/backward here, and measure the
 * relative error of each (max |ours - theirs| / max |theirs|, per tensor).
 */
import { RetroError } from "../util/errors.ts";
import type { Engine } from "../engine/native.ts";
import { readSafetensors, tensorF32, tensorI32 } from "../engine/safetensors.ts";
import { resolveModelConfig, RUN_KEYS, type ModelConfig } from "./config.ts";
import { loadWeights } from "./checkpoint.ts";
import { Model } from "./model.ts";

export interface ParityReport {
  config: ModelConfig;
  peer: string;
  loss: { ours: number; theirs: number; rel: number };
  logitsRel: number;
  /** worst gradient relative error and the parameter it belongs to */
  gradRel: number;
  gradWorst: string;
  grads: { name: string; rel: number; maxAbs: number }[];
}

export function relError(ours: Float32Array, theirs: Float32Array): { rel: number; maxAbs: number } {
  if (ours.length !== theirs.length) throw new RetroError("mismatch", `length ${ours.length} vs ${theirs.length}`);
  let diff = 0,
    scale = 0;
  for (let i = 0; i < ours.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i] - theirs[i]));
    scale = Math.max(scale, Math.abs(theirs[i]));
  }
  // an all-zero reference (e.g. retrieval gradients at gate 0) is compared in absolute terms
  return { rel: scale > 0 ? diff / scale : diff, maxAbs: scale };
}

export function runParity(
  file: string,
  opts: { config?: Record<string, unknown>; engine?: Engine } = {},
): ParityReport {
  const f = readSafetensors(file);
  let raw = opts.config;
  if (!raw) {
    if (!f.metadata.config)
      throw new RetroError("usage", `${file}: no config in the dump's metadata; pass --config JSON`);
    raw = JSON.parse(f.metadata.config) as Record<string, unknown>;
  }
  const config = resolveModelConfig(raw, RUN_KEYS);
  const model = new Model(config, { engine: opts.engine });
  loadWeights(model, f, {
    ignoreExtra: (n) => n.startsWith("grad.") || ["input_ids", "neighbor_ids", "logits", "loss"].includes(n),
  });
  const ids = tensorI32(f, "input_ids");
  const shape = f.tensors.get("input_ids")!.shape;
  if (shape.length !== 2)
    throw new RetroError("corrupt", `${file}: input_ids has shape [${shape}], expected [B, seq+1]`);
  const [B, n1] = shape,
    n = n1 - 1;
  const inp = new Int32Array(B * n),
    tgt = new Int32Array(B * n);
  for (let b = 0; b < B; b++) {
    inp.set(ids.subarray(b * n1, b * n1 + n), b * n);
    tgt.set(ids.subarray(b * n1 + 1, (b + 1) * n1), b * n);
  }
  const neighbours = config.model === "retro" ? tensorI32(f, "neighbor_ids") : undefined;
  model.zeroGrad();
  const { loss } = model.forward({ B, n, ids: inp, targets: tgt, neighbours }, { keepLogits: true });
  model.backward();
  const theirLoss = tensorF32(f, "loss")[0];
  const logitsRel = relError(model.logits(), tensorF32(f, "logits")).rel;
  const grads = model.store.params.map((p) => ({ name: p.name, ...relError(p.grad, tensorF32(f, `grad.${p.name}`)) }));
  const worst = grads.reduce((a, g) => (g.rel > a.rel ? g : a), grads[0]);
  return {
    config,
    peer: f.metadata.peer ?? "unknown",
    loss: { ours: loss, theirs: theirLoss, rel: Math.abs(loss - theirLoss) / Math.abs(theirLoss) },
    logitsRel,
    gradRel: worst.rel,
    gradWorst: worst.name,
    grads,
  };
}
