/**
 * Byte-level BPE: training (from a stream of texts) and encoding.
 *
 * Written by hand because no offline-installable JS library trains BPE vocabularies
 * (@huggingface/tokenizers and js-tiktoken only encode). The algorithm is the standard one
 * (Sennrich et al.; GPT-2 byte level): pre-tokenize with the GPT-2 regex, count words, then
 * repeatedly merge the most frequent adjacent pair, with incremental pair counts and a lazy
 * max-heap so that each merge touches only the words that contain the pair.
 * Ids: 0..255 bytes, 256.. merges in order, last id = end of document.
 */
import { sha256 } from "../util/fsx.ts";
import type { Tokenizer } from "./types.ts";
import { defineSettings } from "../util/settings.ts";

/** `config.tokenizer` of kind "bpe": the learned byte-level BPE's settings, declared once (src/util/settings.ts) */
export const BPE_SETTINGS = defineSettings({
  vocabSize: {
    kind: "int",
    min: 258,
    max: 65535,
    default: 8192,
    help: "vocabulary size (256 bytes + end token + merges)",
  },
  trainChars: {
    kind: "int",
    min: 1,
    default: 100_000_000,
    help: "characters the BPE is learned from at most (split evenly across datasets), bounding its memory",
  },
});

export interface BpeModel {
  kind: "bpe-bytes";
  vocabSize: number;
  merges: [number, number][];
}

const PRETOKEN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const te = new TextEncoder();

export class BpeTokenizer implements Tokenizer {
  readonly id: string;
  readonly vocabSize: number;
  readonly eod: number;
  private ranks = new Map<number, number>(); // pair key -> merge index
  private bytesOf: Uint8Array[] = [];
  private cache = new Map<string, number[]>();
  private dec = new TextDecoder("utf-8");

  constructor(readonly model: BpeModel) {
    this.vocabSize = model.vocabSize;
    this.eod = model.vocabSize - 1;
    if (256 + model.merges.length + 1 !== model.vocabSize)
      throw new Error(`BPE model: ${model.merges.length} merges do not give vocab ${model.vocabSize}`);
    for (let i = 0; i < 256; i++) this.bytesOf.push(Uint8Array.of(i));
    model.merges.forEach(([a, b], i) => {
      this.ranks.set(a * 65536 + b, i);
      const x = this.bytesOf[a],
        y = this.bytesOf[b];
      const m = new Uint8Array(x.length + y.length);
      m.set(x);
      m.set(y, x.length);
      this.bytesOf.push(m);
    });
    this.bytesOf.push(new Uint8Array(0)); // eod decodes to nothing
    this.id = `bpe${model.vocabSize}-${sha256(te.encode(JSON.stringify(model.merges))).slice(0, 12)}`;
  }

  private encodeWord(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let ids = Array.from(te.encode(word));
    while (ids.length > 1) {
      let best = -1,
        bestRank = Infinity;
      for (let i = 0; i + 1 < ids.length; i++) {
        const r = this.ranks.get(ids[i] * 65536 + ids[i + 1]);
        if (r !== undefined && r < bestRank) (bestRank = r), (best = i);
      }
      if (best < 0) break;
      const merged = 256 + bestRank;
      const a = ids[best],
        b = ids[best + 1];
      const out: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) out.push(merged), i++;
        else out.push(ids[i]);
      }
      ids = out;
    }
    if (this.cache.size < 200_000) this.cache.set(word, ids);
    return ids;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    for (const m of text.matchAll(PRETOKEN)) for (const t of this.encodeWord(m[0])) out.push(t);
    return out;
  }

  tokenBytes(id: number): Uint8Array | undefined {
    return this.bytesOf[id];
  }

  decode(ids: ArrayLike<number>): string {
    let n = 0;
    for (let i = 0; i < ids.length; i++) n += this.bytesOf[ids[i]]?.length ?? 0;
    const buf = new Uint8Array(n);
    let o = 0;
    for (let i = 0; i < ids.length; i++) {
      const b = this.bytesOf[ids[i]];
      if (b) buf.set(b, o), (o += b.length);
    }
    return this.dec.decode(buf);
  }
}

/** Max-heap of (count, pair) with lazy deletion: stale entries are skipped when popped. */
class PairHeap {
  private c: number[] = [];
  private p: number[] = [];
  push(count: number, pair: number) {
    const c = this.c,
      p = this.p;
    let i = c.length;
    c.push(count), p.push(pair);
    while (i > 0) {
      const j = (i - 1) >> 1;
      if (this.less(j, i)) this.swap(i, j), (i = j);
      else break;
    }
  }
  /** ties broken by the smaller pair key, so training is deterministic */
  private less(i: number, j: number) {
    return this.c[i] < this.c[j] || (this.c[i] === this.c[j] && this.p[i] > this.p[j]);
  }
  private swap(i: number, j: number) {
    [this.c[i], this.c[j]] = [this.c[j], this.c[i]];
    [this.p[i], this.p[j]] = [this.p[j], this.p[i]];
  }
  pop(): [number, number] | undefined {
    const n = this.c.length;
    if (n === 0) return undefined;
    const top: [number, number] = [this.c[0], this.p[0]];
    this.swap(0, n - 1);
    this.c.pop(), this.p.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1,
        r = l + 1;
      let m = i;
      if (l < n - 1 && this.less(m, l)) m = l;
      if (r < n - 1 && this.less(m, r)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }
}

/** Learn a byte-level BPE of `vocabSize` ids (merges = vocabSize − 257) from texts. */
export async function trainBpe(
  texts: AsyncIterable<string> | Iterable<string>,
  vocabSize: number,
  minCount = 2,
): Promise<BpeModel> {
  if (vocabSize < 258 || vocabSize > 65535)
    throw new Error(`BPE vocabulary size must be in [258, 65535], got ${vocabSize}`);
  const counts = new Map<string, number>();
  for await (const t of texts) for (const m of t.matchAll(PRETOKEN)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [w, c] of [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    words.push(Array.from(te.encode(w)));
    freq.push(c);
  }
  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const addPairs = (wi: number, sign: number) => {
    const w = words[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const k = w[i] * 65536 + w[i + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * freq[wi]);
      if (sign > 0) {
        let s = where.get(k);
        if (!s) where.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1);
  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push(c, k);
  const merges: [number, number][] = [];
  const nMerges = vocabSize - 257;
  while (merges.length < nMerges) {
    const top = heap.pop();
    if (!top) break;
    const [c, k] = top;
    const now = pairCount.get(k) ?? 0;
    if (now !== c) {
      // stale: the count changed since this entry was pushed. A pair whose count only fell (a merge took some of
      // its occurrences) is not among the touched pairs of that merge: push it again at its current count, or it
      // would be lost from the heap while it still occurs
      if (now > 0) heap.push(now, k);
      continue;
    }
    if (c < minCount) break;
    const a = Math.floor(k / 65536),
      b = k % 65536;
    const id = 256 + merges.length;
    merges.push([a, b]);
    const touched = new Set<number>();
    for (const wi of where.get(k) ?? []) {
      const w = words[wi];
      addPairs(wi, -1);
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) out.push(id), i++;
        else out.push(w[i]);
      }
      words[wi] = out;
      addPairs(wi, 1);
      for (let i = 0; i + 1 < out.length; i++) touched.add(out[i] * 65536 + out[i + 1]);
    }
    where.delete(k);
    pairCount.delete(k);
    for (const t of touched) heap.push(pairCount.get(t) ?? 0, t);
  }
  // a corpus too small for the requested size gives a smaller vocabulary; the size is recorded exactly
  return { kind: "bpe-bytes", vocabSize: 256 + merges.length + 1, merges };
}
