/**
 * Instruction-tuning batches: conversations from several files blended by weight (BlendOrder, Megatron's rule,
 * replayable from one position), each as prompt + answer + end-of-document tokens; the loss mask keeps the
 * positions whose target is an answer token or the end token (the last assistant turn only). A batch is as long
 * as its longest conversation, rounded up to the chunk length (Retro; 32 tokens for a GPT: see sft.ts) and padded
 * with the end token (mask 0).
 * Retro with the gate on retrieves, through the Retriever, the neighbours of every chunk of every sequence.
 */
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { Batch } from "../model/model.ts";
import type { Retriever } from "../db/retriever.ts";
import { BlendOrder } from "../train/blend.ts";
import { hashUniform } from "../util/rng.ts";
import { RetroError } from "../util/errors.ts";
import { log } from "../util/progress.ts";
import { readConversations, tokenizeExample, type TokenizedExample } from "./data.ts";
import type { SftSettings } from "./config.ts";

export interface SftSplit {
  train: TokenizedExample[][];
  valid: TokenizedExample[];
  weights: number[];
}

/**
 * Read, tokenize and split every file: a conversation is held out when hash(seed, its text) < validFraction
 * (the split does not depend on where the file lives or on its order).
 */
export function loadSftData(s: SftSettings, tok: Tokenizer, seq: number, seed: number): SftSplit {
  const train: TokenizedExample[][] = [],
    valid: TokenizedExample[] = [];
  let cut = 0,
    total = 0;
  for (const d of s.data) {
    const conv = readConversations(d.path, s.system);
    const mine: TokenizedExample[] = [];
    conv.forEach((c) => {
      const ex = tokenizeExample(tok, c, seq);
      total++;
      if (ex.cut) cut++;
      // small files keep everything for training
      if (
        conv.length >= 20 &&
        hashUniform(seed, `${c.parts.head}${c.parts.middle}${c.parts.tail}\u0000${c.answer}`) < s.validFraction
      )
        valid.push(ex);
      else mine.push(ex);
    });
    if (!mine.length && d.weight > 0) throw new RetroError("badInput", `${d.path}: no conversation left for training`);
    train.push(mine);
  }
  log(
    `instruction data: ${total} conversations from ${s.data.length} file(s), ${valid.length} held ` +
      `out${cut ? `, ${cut} prompts cut to fit ${seq} positions` : ""}`,
  );
  return { train, valid, weights: s.data.map((d) => d.weight) };
}

export interface SftBatchOptions {
  seq: number;
  batch: number;
  /** Retro: sequences are a multiple of this many tokens */
  chunk: number;
  eod: number;
  /** Retro with the gate on: k, r and the retriever */
  retrieval?: { k: number; r: number; retriever: Retriever };
}

/** A batch of examples: inputs, targets, the loss mask on the answers, neighbours when retrieving. */
export async function sftBatch(examples: TokenizedExample[], o: SftBatchOptions): Promise<Batch> {
  const B = examples.length;
  const longest = Math.max(...examples.map((e) => e.ids.length - 1));
  const n = Math.min(o.seq, Math.ceil(longest / o.chunk) * o.chunk);
  const ids = new Int32Array(B * n).fill(o.eod),
    targets = new Int32Array(B * n).fill(o.eod),
    mask = new Float32Array(B * n);
  examples.forEach((e, b) => {
    const L = Math.min(n, e.ids.length - 1);
    for (let t = 0; t < L; t++) {
      ids[b * n + t] = e.ids[t];
      targets[b * n + t] = e.ids[t + 1];
      if (t + 1 >= e.answerStart) mask[b * n + t] = 1;
    }
  });
  const batch: Batch = { B, n, ids, targets, mask };
  if (o.retrieval) {
    const l = n / o.chunk,
      chunks: Int32Array[] = [];
    for (let b = 0; b < B; b++)
      for (let u = 0; u < l; u++) chunks.push(ids.subarray(b * n + u * o.chunk, b * n + (u + 1) * o.chunk));
    batch.neighbours = (await o.retrieval.retriever.retrieveChunks(chunks, o.retrieval.k, o.retrieval.r)).tokens;
  }
  return batch;
}

/** The training side: blended, shuffled per epoch, resumable by position. */
export class SftLoader {
  private readonly order: BlendOrder;
  private readonly size: number;
  constructor(
    private readonly data: SftSplit,
    private readonly o: SftBatchOptions,
    seed: number,
  ) {
    this.order = new BlendOrder(
      data.train.map((l) => Uint32Array.from(l.keys())),
      data.weights,
      seed,
    );
    this.size = data.train.reduce((a, l, i) => a + (data.weights[i] > 0 ? l.length : 0), 0);
  }
  get pos(): number {
    return this.order.pos;
  }
  get epoch(): number {
    return this.order.pos / this.size;
  }
  seek(pos: number): void {
    this.order.seek(pos);
  }
  async next(): Promise<Batch> {
    const picks: TokenizedExample[] = [];
    for (let i = 0; i < this.o.batch; i++) {
      const item = this.order.next();
      picks.push(this.data.train[this.order.lastDataset][item]);
    }
    return sftBatch(picks, this.o);
  }
}
