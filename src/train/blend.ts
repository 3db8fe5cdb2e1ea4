/**
 * Megatron's dataset blending as a replayable order: draw t goes to the dataset whose share of draws lags its
 * weight most (largest weight·(t+1) − drawn); each dataset walks a permutation of its items seeded by
 * (seed, dataset, epoch), reshuffled every epoch. The state is one integer (`pos`): `seek` replays to it.
 * Used by the pretraining Loader (database samples) and the instruction-tuning SftLoader (conversations).
 */
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
