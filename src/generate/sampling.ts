/**
 * Choosing the next token from logits: greedy (the default, as the paper evaluates), or sampling with a
 * temperature, restricted to the top-k tokens and/or the smallest set whose probability reaches top-p, from
 * a seeded generator (the same seed gives the same text).
 */
import { Rng, DEFAULT_SEED } from "../util/rng.ts";
import { SEED_RANGE } from "../util/numbers.ts";
import { defineSettings, validateSettings, type SettingValues } from "../util/settings.ts";

/**
 * The sampling settings, declared once (src/util/settings.ts): `retro generate`'s flags (kebab-case of the key), the
 * HTTP server's request fields (snake_case: `max_tokens`, `top_p`, … as OpenAI and vLLM name them) and the library's
 * `SamplingOptions` are read and checked by this one table (vLLM's `SamplingParams` as the model).
 */
export const SAMPLING_SETTINGS = defineSettings({
  maxTokens: { kind: "int", min: 1, max: 4096, default: 64, help: "new tokens at most" },
  temperature: {
    kind: "num",
    min: 0,
    max: 2,
    default: 0,
    help: "0 = greedy (as the paper evaluates); > 0 samples from softmax(logits / temperature)",
  },
  topK: { kind: "int", min: 0, default: 0, help: "sample among the k most likely tokens (0 = all)" },
  topP: {
    kind: "num",
    above: 0,
    max: 1,
    default: 1,
    help: "sample among the most likely tokens up to this cumulative probability (1 = all)",
  },
  seed: {
    kind: "int",
    ...SEED_RANGE,
    default: DEFAULT_SEED,
    help: "sampling seed (the same seed gives the same text)",
  },
});

/** Sampling settings, each optional (absent: the table's default). */
export type SamplingOptions = Partial<SettingValues<typeof SAMPLING_SETTINGS>>;

/** the request field of a sampling key (`maxTokens` → `max_tokens`) */
export const httpFieldOf = (key: string): string => key.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());

/** Check the given sampling settings against the table (a usage error naming `<prefix><key>`). */
export function checkSampling(o: SamplingOptions, name: (key: string) => string = (k) => k): void {
  validateSettings(o, SAMPLING_SETTINGS, name, { givenOnly: true });
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
    this.rng = new Rng(o.seed ?? DEFAULT_SEED);
  }

  get greedy(): boolean {
    return !this.o.temperature;
  }

  /** the next token from the logits row [V] */
  pick(logits: Float32Array): number {
    if (this.greedy) return argmax(logits);
    const V = logits.length,
      T = this.o.temperature!;
    let order = Array.from({ length: V }, (_, i) => i);
    const topK = this.o.topK ?? 0,
      topP = this.o.topP ?? 1;
    if (topK > 0 || topP < 1) order.sort((a, b) => logits[b] - logits[a] || a - b);
    if (topK > 0) order = order.slice(0, topK);
    let mx = -Infinity;
    for (const i of order) mx = Math.max(mx, logits[i]);
    const p = order.map((i) => Math.exp((logits[i] - mx) / T));
    let sum = p.reduce((s, x) => s + x, 0);
    if (topP < 1) {
      let acc = 0,
        cut = p.length;
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
