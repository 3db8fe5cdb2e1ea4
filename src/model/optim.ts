/**
 * AdamW (PyTorch's update rule) over the model's flat parameter buffer, with global-norm gradient clipping
 * and a freeze mask: parameters of a frozen group are neither updated nor counted in the gradient norm.
 * Weight decay applies to matrices and embeddings only (ParamSpec.decay), as in nanoGPT.
 */
import type { Model } from "./model.ts";
import type { ParamGroup } from "./params.ts";

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** global gradient-norm clip (0 = off) */
  clip: number;
}

export const DEFAULT_ADAMW: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0 };

export class AdamW {
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** optimizer steps taken */
  t = 0;

  /** learning-rate multiplier per parameter group (absent = 1): e.g. the fresh retrieval part of a Retro-fit */
  readonly lrScale = new Map<ParamGroup, number>();

  constructor(
    readonly model: Model,
    readonly cfg: AdamWConfig = DEFAULT_ADAMW,
  ) {
    this.m = new Float32Array(model.store.size);
    this.v = new Float32Array(model.store.size);
  }

  private trainable() {
    return this.model.store.params.filter((p) => !this.model.frozen.has(p.group));
  }

  /** L2 norm of the trainable gradients */
  gradNorm(): number {
    const e = this.model.engine;
    let s = 0;
    for (const p of this.trainable()) s += e.sumsq(p.grad, p.size);
    return Math.sqrt(s);
  }

  /**
   * One update at learning rate `lr` with gradient `grad · gradScale` (gradient accumulation passes
   * 1 / micro-batches); returns that gradient's norm before clipping.
   */
  step(lr: number, gradScale = 1): { gradNorm: number } {
    const { beta1, beta2, eps, weightDecay, clip } = this.cfg;
    const e = this.model.engine;
    const norm = this.gradNorm() * gradScale;
    const scale = (clip > 0 && norm > clip ? clip / norm : 1) * gradScale;
    this.t++;
    for (const p of this.trainable()) {
      const o = p.offset,
        n = p.size;
      e.adamw(
        p.data,
        p.grad,
        this.m.subarray(o, o + n),
        this.v.subarray(o, o + n),
        n,
        lr * (this.lrScale.get(p.group) ?? 1),
        beta1,
        beta2,
        eps,
        p.decay ? weightDecay : 0,
        this.t,
        scale,
      );
    }
    return { gradNorm: norm };
  }
}
