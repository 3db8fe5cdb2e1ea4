/**
 * Megatron's dataset blending as a replayable order: draw t goes to the dataset whose share of draws lags its
 * weight most (largest weight·(t+1) − drawn); each dataset walks a permutation of its items seeded by
 * (seed, dataset, epoch), reshuffled every epoch. The state is one integer (`pos`): `seek` replays to it.
 * Used by the pretraining Loader (database samples) and the instruction-tuning SftLoader (conversations).
 */
import { RetroError } from "../util/errors.ts";
import { isRetrievalOnly } from "../db/config.ts";
import { Rng, hash32 } from "../util/rng.ts";

export class BlendOrder {
  private readonly weights: number[];
  private drawn: number[];
  private perms = new Map<number, { epoch: number; perm: Uint32Array }>();
  /** items drawn so far */
  pos = 0;
  /** the dataset of the item `next` returned last */
  lastDataset = -1;

  /**
   * `lists[d]`: the items of dataset d; `weights`: blend weights (normalised here; a dataset without items is never
   * drawn)
   */
  constructor(
    private readonly lists: Uint32Array[],
    weights: number[],
    private readonly seed: number,
  ) {
    const w = lists.map((l, i) => (l.length > 0 ? (weights[i] ?? 1) : 0));
    const total = w.reduce((a, b) => a + b, 0);
    this.weights = w.map((x) => x / total);
    this.drawn = new Array<number>(lists.length).fill(0);
  }

  /** items drawn from each dataset so far */
  get drawnPerDataset(): readonly number[] {
    return this.drawn;
  }

  seek(pos: number): void {
    this.pos = 0;
    this.drawn.fill(0);
    this.perms.clear();
    for (let i = 0; i < pos; i++) this.next();
  }

  next(): number {
    const t = this.pos;
    let best = 0,
      bestErr = -Infinity;
    for (let d = 0; d < this.weights.length; d++) {
      if (this.weights[d] === 0) continue;
      const err = this.weights[d] * (t + 1) - this.drawn[d];
      if (err > bestErr) {
        bestErr = err;
        best = d;
      }
    }
    const j = this.drawn[best]++;
    this.lastDataset = best;
    const list = this.lists[best],
      n = list.length,
      epoch = Math.floor(j / n);
    let p = this.perms.get(best);
    if (!p || p.epoch !== epoch) {
      const perm = Uint32Array.from(list);
      const rng = new Rng(hash32(`${this.seed}:${best}:${epoch}`));
      for (let i = n - 1; i > 0; i--) {
        const k = rng.int(i + 1);
        const x = perm[i];
        perm[i] = perm[k];
        perm[k] = x;
      }
      p = { epoch, perm };
      this.perms.set(best, p);
    }
    this.pos++;
    return p.perm[j % n];
  }
}

/** A run's `blend` setting ("name=weight,name=weight") as weights by dataset name; "" is none. */
export function parseBlend(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of text.split(",").map((x) => x.trim())) {
    if (!part) continue;
    const m = /^(.+?)=([^=]+)$/.exec(part);
    const w = m ? Number(m[2]) : Number.NaN;
    if (!m || !Number.isFinite(w) || w < 0)
      throw new RetroError("usage", `blend: "${part}" is not name=weight (a weight ≥ 0), e.g. people-d=1,people-a=0`);
    const name = m[1].trim();
    if (out.has(name)) throw new RetroError("usage", `blend: dataset "${name}" named twice`);
    out.set(name, w);
  }
  return out;
}

/**
 * The blend weights of a database's datasets for a run: the database's own, with the run's `blend` over them.
 * A name the database does not hold is refused, naming those it does. `retro`: the run reads neighbours, so a
 * retrieval-only dataset given a weight is refused too — the query stage searches no sample made only of
 * retrieval-only documents, so its samples have none.
 */
export function blendWeights(
  datasets: readonly { name: string; weight: number }[] | undefined,
  blend: string,
  retro?: { dbDir: string },
): number[] {
  const given = parseBlend(blend);
  const list = datasets ?? [{ name: "default", weight: 1 }];
  for (const name of given.keys())
    if (!list.some((d) => d.name === name))
      throw new RetroError(
        "usage",
        `blend: the database has no dataset "${name}" (it has ${list.map((d) => d.name).join(", ")})`,
      );
  const weights = list.map((d) => given.get(d.name) ?? d.weight);
  const unsearched = list.filter((d, i) => isRetrievalOnly(d) && weights[i] > 0);
  if (retro && unsearched.length)
    throw new RetroError(
      "badInput",
      `blend: ${unsearched.map((d) => d.name).join(", ")} is retrieval-only in ${retro.dbDir} (weight 0 there): its ` +
        `samples have no neighbours, so a Retro cannot train on it (a GPT can). Build the database with a ` +
        `weight above 0 for it, and give it 0 in the runs that must not see it (--blend name=0)`,
    );
  return weights;
}
