/**
 * Choosing the next token from logits: greedy (the default, as the paper evaluates), or sampling with a
 * temperature, restricted to the top-k tokens and/or the smallest set whose probability reaches top-p, from
 * a seeded generator (the same seed gives the same text).
 */
import { Rng } from "../util/rng.ts";
import { RetroError } from "../util/errors.ts";

export interface SamplingOptions {
  /** 0 (default) = greedy; > 0 samples from softmax(logits / temperature) */
  temperature?: number;
  /** keep the k most likely tokens (0 = all) */
  topK?: number;
  /** keep the most likely tokens up to this cumulative probability (1 = all) */
  topP?: number;
  seed?: number;
}

export function checkSampling(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) throw new RetroError("usage", `temperature must be ≥ 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new RetroError("usage", `top-k must be an integer ≥ 0, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new RetroError("usage", `top-p must be in (0, 1], got ${o.topP}`);
}

/** index of the largest value (the lowest index among ties) */
export function argmax(x: ArrayLike<number>, from = 0, to = x.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (x[i] > x[best]) best = i;
  return best - from;
}

export class Sampler {
  private readonly rng: Rng;
  constructor(private readonly o: SamplingOptions = {}) {
    checkSampling(o);
    this.rng = new Rng(o.seed ?? 1234);
  }

  get greedy(): boolean {
    return !this.o.temperature;
  }

  /** the next token from the logits row [V] */
  pick(logits: Float32Array): number {
    if (this.greedy) return argmax(logits);
    const V = logits.length, T = this.o.temperature!;
    let order = Array.from({ length: V }, (_, i) => i);
    const topK = this.o.topK ?? 0, topP = this.o.topP ?? 1;
    if (topK > 0 || topP < 1) order.sort((a, b) => logits[b] - logits[a] || a - b);
    if (topK > 0) order = order.slice(0, topK);
    let mx = -Infinity;
    for (const i of order) mx = Math.max(mx, logits[i]);
    const p = order.map((i) => Math.exp((logits[i] - mx) / T));
    let sum = p.reduce((s, x) => s + x, 0);
    if (topP < 1) {
      let acc = 0, cut = p.length;
      for (let j = 0; j < p.length; j++) {
        acc += p[j] / sum;
        if (acc >= topP) {
          cut = j + 1;
          break;
        }
      }
      order = order.slice(0, cut);
      p.length = cut;
      sum = p.reduce((s, x) => s + x, 0);
    }
    let u = this.rng.next() * sum;
    for (let j = 0; j < p.length; j++) {
      u -= p[j];
      if (u < 0) return order[j];
    }
    return order[p.length - 1];
  }
}
