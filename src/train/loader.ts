/**
 * The training data loader: samples of `seq` tokens (+1 target) from a database split, in a seeded, shuffled,
 * epoch-aware order with the datasets' blend weights, and, for Retro, each sample's neighbour tokens [l, k, r]
 * from the database's precomputed neighbours.
 *
 * Items: database sample i covers tokens [i·S, (i+1)·S] of the split (S = the database's query seq); a model
 * with seq = S / p reads it as p items, item (i, h) = tokens [i·S + h·seq, +seq+1], whose chunks are the
 * database's chunks h·l … h·l+l−1 of sample i (their neighbours exclude every document of the whole sample).
 * Each item belongs to the dataset of its first token's document.
 *
 * Order (train): Megatron's blending — draw t goes to the dataset whose share of draws lags its weight most;
 * each dataset walks a permutation of its items seeded by (seed, dataset, epoch), reshuffled every epoch.
 * The order depends only on (database, seq, seed): a GPT run and a Retro run with the same seed read
 * identical tokens. The position is one integer (`pos`), so a resumed run continues exactly.
 * Order (valid): every item once, in order (evaluation).
 */
import { RetroError } from "../util/errors.ts";
import { hash32 } from "../util/rng.ts";
import { BlendOrder, blendWeights } from "./blend.ts";
import { blockRanges } from "../util/blockfile.ts";
import type { Database } from "../db/database.ts";
import type { Batch } from "../model/model.ts";
import type { ModelConfig } from "../model/config.ts";

export interface LoaderOptions {
  split: "train" | "valid";
  seq: number;
  batch: number;
  seed: number;
  /** train: the run's dataset weights over the database's ("name=weight,…", TRAIN_SETTINGS.blend) */
  blend?: string;
  /** Retro: neighbours per chunk and tokens per neighbour; omit for GPT */
  retrieval?: { k: number; r: number };
  /**
   * A control for evaluation: read each item's neighbours from the item `shiftNeighbours` places further on
   * (mod items) instead of its own, i.e. real retrieved text that belongs to another sample.
   */
  shiftNeighbours?: number;
  /**
   * A control for evaluation: every neighbour a chunk of the database drawn at random (seeded by this value, item,
   * chunk, slot).
   */
  randomNeighbours?: number;
}

export class Loader {
  readonly items: number;
  readonly parts: number;
  readonly dbSeq: number;
  private blend: BlendOrder;
  private nbr: Int32Array | null = null;
  private keep = 0;
  private chunksPerSample = 0;
  /** items consumed so far */
  pos = 0;

  constructor(
    readonly db: Database,
    readonly o: LoaderOptions,
  ) {
    const info = db.manifest.neighbours?.[o.split];
    if (!info)
      throw new RetroError(
        "badInput",
        `${db.dir}: the ${o.split} split has no samples/neighbours yet ("retro db query --db ${db.dir} --split ` +
          `${o.split}")`,
      );
    this.dbSeq = info.seq;
    if (info.seq % o.seq)
      throw new RetroError(
        "mismatch",
        `model seq ${o.seq} must divide the database's sample length ${info.seq} (config.query.seq): build the ` +
          `database with --seq ${o.seq} (or a multiple of it)`,
      );
    if (o.seq % db.m)
      throw new RetroError("mismatch", `model seq ${o.seq} must be a multiple of the database's chunk length ${db.m}`);
    this.parts = info.seq / o.seq;
    this.items = info.samples * this.parts;
    if (this.items < 1)
      throw new RetroError(
        "badInput",
        `${db.dir}: the ${o.split} split holds no complete sample of ${info.seq} tokens (it has ` +
          `${(o.split === "train" ? db.train : db.valid).nTokens} tokens). Add text, or rebuild the database with a ` +
          `larger share held out ` +
          `(retro db build --valid-fraction 0.1) or shorter samples (retro db build --seq ${Math.max(db.m, 128)}; ` +
          `then train with --seq at most that)`,
      );
    if (o.retrieval) {
      if (o.retrieval.k > info.keep)
        throw new RetroError("mismatch", `k = ${o.retrieval.k} neighbours asked, the database kept ${info.keep}`);
      this.keep = info.keep;
      this.chunksPerSample = info.chunksPerSample;
      this.nbr = new Int32Array(info.samples * info.chunksPerSample * info.keep);
      // all neighbour blocks of the split in memory (20 ints per chunk: ~10 MB for the bundled corpus)
      for (const [s, e] of blockRanges(info.samples, info.blockSize))
        this.nbr.set(db.neighbourIdBlock(o.split, s, e), s * info.chunksPerSample * info.keep);
    }
    const reader = db.split(o.split);
    const nd = Math.max(1, db.manifest.datasets?.length ?? 1);
    const itemDataset = new Uint16Array(this.items);
    const counts = new Array<number>(nd).fill(0);
    for (let it = 0; it < this.items; it++) {
      const ds = Math.min(nd - 1, reader.docDataset(reader.docAt(this.start(it))));
      itemDataset[it] = ds;
      counts[ds]++;
    }
    const fill = counts.map(() => 0);
    const byDataset = counts.map((c) => new Uint32Array(c));
    for (let it = 0; it < this.items; it++) byDataset[itemDataset[it]][fill[itemDataset[it]]++] = it;
    const retro = o.split === "train" && o.retrieval ? { dbDir: db.dir } : undefined;
    const weights = blendWeights(db.manifest.datasets, o.blend ?? "", retro);
    if (o.split === "train" && !byDataset.some((l, d) => l.length > 0 && (weights[d] ?? 1) > 0)) {
      const names = db.manifest.datasets?.map((d, i) => `${d.name} ${weights[i]} (${byDataset[i]?.length ?? 0})`);
      throw new RetroError(
        "badInput",
        `${db.dir}: nothing to train on — no dataset with training samples has a weight above 0 (weight and ` +
          `samples: ${names?.join(", ")})`,
      );
    }
    this.blend = new BlendOrder(byDataset, weights, o.seed);
  }

  /** first token of item `it` */
  start(it: number): number {
    return Math.floor(it / this.parts) * this.dbSeq + (it % this.parts) * this.o.seq;
  }

  /** jump to a position (resume): replays the blending decisions */
  /** train split: items drawn from each dataset so far */
  get drawnPerDataset(): readonly number[] {
    return this.blend.drawnPerDataset;
  }

  seek(pos: number): void {
    this.pos = pos;
    if (this.o.split === "train") this.blend.seek(pos);
  }

  private nextItem(): number {
    if (this.o.split === "valid") return this.pos++ % this.items;
    this.pos++;
    return this.blend.next();
  }

  /** epochs of the split consumed so far (items drawn / items) */
  get epoch(): number {
    return this.pos / this.items;
  }

  /** the next batch of `size` items (default: the configured batch) */
  next(size = this.o.batch): Batch & { items: number[] } {
    const B = size,
      n = this.o.seq;
    const reader = this.db.split(this.o.split);
    const ids = new Int32Array(B * n),
      targets = new Int32Array(B * n);
    const items: number[] = [];
    const rt = this.o.retrieval,
      l = n / this.db.m;
    // neighbour ids [B, l, k], turned into tokens [B, l, k, r] by the database at the end
    const nbrIds = rt ? new Int32Array(B * l * rt.k) : null;
    for (let b = 0; b < B; b++) {
      const it = this.nextItem();
      items.push(it);
      const s = this.start(it);
      const tok = reader.read(s, s + n + 1);
      for (let t = 0; t < n; t++) {
        ids[b * n + t] = tok[t];
        targets[b * n + t] = tok[t + 1];
      }
      if (rt && nbrIds) {
        const src = this.o.shiftNeighbours ? (it + this.o.shiftNeighbours) % this.items : it;
        const sample = Math.floor(src / this.parts),
          first = (src % this.parts) * l;
        for (let j = 0; j < l; j++) {
          const row = (sample * this.chunksPerSample + first + j) * this.keep;
          for (let q = 0; q < rt.k; q++) {
            nbrIds[(b * l + j) * rt.k + q] =
              this.o.randomNeighbours !== undefined
                ? hash32(`${this.o.randomNeighbours}:${it}:${j}:${q}`) % this.db.nChunks
                : this.nbr![row + q];
          }
        }
      }
    }
    const neighbours = rt && nbrIds ? this.db.neighbourBlock(nbrIds, B * l, rt.k, rt.k, rt.r) : undefined;
    return { B, n, ids, targets, neighbours, items };
  }
}

/** Refuse a model that cannot read this database (tokenizer vocabulary, chunk length, neighbours kept). */
export function checkModelAgainstDb(c: ModelConfig, db: Database): void {
  const t = db.manifest.tokenizer!;
  if (c.vocab !== t.vocabSize)
    throw new RetroError("mismatch", `model vocab ${c.vocab} ≠ database tokenizer ${t.id} with ${t.vocabSize} ids`);
  if (c.model === "retro" && c.chunk !== db.m)
    throw new RetroError("mismatch", `model chunk ${c.chunk} ≠ database chunk length ${db.m}`);
}
