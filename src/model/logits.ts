/**
 * The logits of one token sequence, for checking a model against another implementation (`retro eval logits`,
 * the peers of ../shared/peers): a GPT directly; a Retro only at CCA gate 0 (its decoder alone), run over the ids
 * padded to whole chunks with empty neighbours, which the gate multiplies by 0 (causal: the padding changes no
 * earlier position).
 */
import { RetroError } from "../util/errors.ts";
import type { Model } from "./model.ts";

export function sequenceLogits(model: Model, ids: number[]): { logits: Float32Array; loss: number } {
  const c = model.config;
  if (ids.length > c.seq) throw new RetroError("usage", `${ids.length} ids: the model has ${c.seq} positions`);
  const bad = ids.find((x) => x >= c.vocab);
  if (bad !== undefined) throw new RetroError("usage", `token id ${bad}: the vocabulary has ${c.vocab}`);
  if (model.isRetro && model.gate !== 0)
    throw new RetroError("usage", "a Retro reads neighbours: its logits here are its decoder's alone (--gate 0)");
  const n = model.isRetro ? Math.ceil(ids.length / c.chunk) * c.chunk : ids.length;
  const x = new Int32Array(n);
  x.set(ids);
  const targets = new Int32Array(n);
  targets.set(ids.slice(1));
  const mask = new Float32Array(n);
  mask.fill(1, 0, ids.length - 1);
  const neighbours = model.isRetro ? new Int32Array((n / c.chunk) * c.k * c.r) : undefined;
  const { loss } = model.forward({ B: 1, n, ids: x, targets, mask, neighbours }, { keepLogits: true });
  return { logits: model.logits().slice(0, ids.length * c.vocab), loss };
}

/** max |a − b| over max |b|: the scale-free difference of two logit tables */
export function relativeDifference(a: Float32Array, b: Float32Array): number {
  let err = 0,
    top = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    top = Math.max(top, Math.abs(b[i]));
  }
  return top > 0 ? err / top : err;
}
