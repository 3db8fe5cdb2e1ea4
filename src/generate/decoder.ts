/**
 * Incremental inference for GPT and Retro: a key/value cache per decoder layer, prefill of a prompt in one
 * pass, then a token per step for several sequences at once, with exactly the training forward's semantics
 * (`src/model/model.ts`; checked position by position against it in test/unit/generate.test.ts).
 *
 * Retro, incrementally. With n a multiple of the chunk length m, the training forward lets the token at
 * position t read the neighbours of chunk u = ⌊(t+1)/m⌋ − 1 (none for t < m−1): the position that completes a
 * chunk is the first to read that chunk's neighbours. So when a feed of tokens completes chunk u, its
 * neighbours (given by the caller, who retrieved them from the chunk's tokens) are encoded — the encoder's
 * cross-attention reading chunk u's activations at the first CCA layer, as in training — and each CCA layer
 * keeps the encoded neighbours' keys and values; positions u·m+m−1 … u·m+2m−2 then attend to them. The encoder
 * and the CCA keys/values are the model's own code (`Model.encodeChunkForDecoding`); only the query side of CCA —
 * rows grouped by the chunk they read, over any number of new tokens — is written here.
 *
 * Rows of one feed (any mix of sequences, any number of new tokens each) go through every linear layer
 * together; attention runs per sequence over its own cache (`qpos0` = the cache length).
 */
import type { Engine } from "../engine/native.ts";
import { attention } from "../engine/ops.ts";
import type { Model } from "../model/model.ts";
import { RetroError } from "../util/errors.ts";

/** new tokens per feed up to which a forward is a decoding step (one attention call for all feeds) */
const DECODE_ROWS = 4;

/** One sequence's cached state. */
export interface Slot {
  /** tokens processed (the next token's position) */
  pos: number;
  /** [seq, 2D] per decoder layer: keys then values of every processed position */
  kv: Float32Array[];
  /** Retro: [seq, D] the first CCA layer's normalised activations (what the encoder reads) */
  h: Float32Array | null;
  /** Retro: per CCA layer, per completed chunk, the encoded neighbours' keys and values [k·r, 2D] (rotated) */
  ckv: Map<number, Float32Array>[];
  /** the tokens processed, in order (for retrieval and for rebuilding the cache after a window slide) */
  ids: number[];
  /** Retro: the neighbour tokens [k·r] each completed chunk read */
  neighbours: Map<number, Int32Array>;
}

export interface Feed {
  slot: Slot;
  /** new tokens, at positions slot.pos … slot.pos + ids.length − 1 */
  ids: ArrayLike<number>;
  /**
   * Retro: neighbour tokens [k·r] for each chunk u these tokens complete (chunk u ends at position u·m+m−1);
   * not needed when the gate is 0
   */
  neighbours?: Map<number, Int32Array>;
}

/** Named scratch buffers that grow to the largest size asked and are reused (no allocation per step). */
class Scratch {
  private bufs = new Map<string, Float32Array>();
  get(name: string, n: number): Float32Array {
    let b = this.bufs.get(name);
    if (!b || b.length < n) this.bufs.set(name, (b = new Float32Array(Math.max(n, Math.ceil((b?.length ?? 0) * 1.5)))));
    return b.subarray(0, n);
  }
}

export class Decoder {
  readonly model: Model;
  /** time spent encoding neighbours (and the CCA keys/values made from them), chunks encoded */
  readonly timing = { encodeS: 0, chunks: 0 };
  private readonly e: Engine;
  private readonly s = new Scratch();
  private readonly cca: number[]; // 0-based decoder layers with CCA
  private readonly D: number;

  constructor(model: Model) {
    this.model = model;
    this.e = model.engine;
    const c = model.config;
    this.D = c.d;
    this.cca = model.isRetro ? c.cca_layers.map((i) => i - 1) : [];
  }

  newSlot(): Slot {
    const c = this.model.config,
      D = this.D;
    return {
      pos: 0,
      kv: Array.from({ length: c.layers }, () => new Float32Array(c.seq * 2 * D)),
      h: this.cca.length ? new Float32Array(c.seq * D) : null,
      ckv: this.cca.map(() => new Map()),
      ids: [],
      neighbours: new Map(),
    };
  }

  /** Forget a slot's tokens (its buffers are kept for the next sequence). */
  reset(slot: Slot): void {
    slot.pos = 0;
    slot.ids = [];
    slot.ckv.forEach((m) => m.clear());
    slot.neighbours.clear();
  }

  private p(name: string): Float32Array {
    return this.model.store.get(name).data;
  }

  /** The chunks whose last token is among positions [from, to): chunk u ends at u·m + m − 1. */
  chunksCompleted(from: number, to: number): number[] {
    const m = this.model.config.chunk,
      out: number[] = [];
    for (let u = Math.floor(from / m); (u + 1) * m - 1 < to; u++) if ((u + 1) * m - 1 >= from) out.push(u);
    return out;
  }

  /**
   * Run the new tokens of each feed through the model, extending its slot's cache. Returns the logits
   * [feeds, vocab] of each feed's last new token, or with `allLogits` [Σ new tokens, vocab] in feed order.
   */
  forward(feeds: Feed[], opts: { allLogits?: boolean } = {}): Float32Array {
    const model = this.model,
      c = model.config,
      e = this.e,
      D = this.D,
      H = c.heads,
      hd = D / H;
    if (feeds.length === 0) throw new RetroError("usage", "forward: no feeds");
    const starts: number[] = [];
    let N = 0;
    for (const f of feeds) {
      if (f.ids.length === 0) throw new RetroError("usage", "forward: a feed without tokens");
      if (f.slot.pos + f.ids.length > c.seq)
        throw new RetroError(
          "usage",
          `forward: ${f.slot.pos} + ${f.ids.length} tokens exceed the model's ${c.seq} positions`,
        );
      for (let i = 0; i < f.ids.length; i++) {
        const t = f.ids[i];
        if (!Number.isInteger(t) || t < 0 || t >= c.vocab)
          throw new RetroError("usage", `forward: token ${t} is not in the vocabulary [0, ${c.vocab})`);
      }
      starts.push(N);
      N += f.ids.length;
    }
    const s = this.s;
    let x = s.get("x", N * D);
    const ln = s.get("ln", N * D),
      mean = s.get("mean", N),
      rstd = s.get("rstd", N);
    const q = s.get("q", N * D),
      kvNew = s.get("kvNew", N * 2 * D),
      y = s.get("y", N * D),
      tmp = s.get("tmp", N * D);
    const wte = this.p("wte.weight"),
      wpe = this.p("wpe.weight");
    const ids = new Int32Array(N);
    feeds.forEach((f, fi) => {
      for (let i = 0; i < f.ids.length; i++) ids[starts[fi] + i] = f.ids[i];
      const T = f.ids.length;
      // row i at position pos + i: the position table from row pos, with period T (no wrap inside T rows)
      e.embeddingForward(
        x.subarray(starts[fi] * D),
        ids.subarray(starts[fi], starts[fi] + T),
        wte,
        wpe.subarray(f.slot.pos * D),
        T,
        T,
        D,
        c.vocab,
      );
    });

    // a decoding step: at most DECODE_ROWS new tokens in every feed (attentionDecode), else per-feed kernels
    const decoding = feeds.every((f) => f.ids.length <= DECODE_ROWS);
    const nNew = Int32Array.from(feeds, (f) => f.ids.length),
      nKeys = Int32Array.from(feeds, (f) => f.slot.pos + f.ids.length),
      row0 = Int32Array.from(starts);
    for (let li = 0; li < c.layers; li++) {
      const pre = `blocks.${li}`;
      // ---- causal self-attention over the cache
      e.layernormForward(ln, mean, rstd, x, this.p(`${pre}.ln1.weight`), this.p(`${pre}.ln1.bias`), N, D);
      e.linearForward(q, ln, this.p(`${pre}.attn.q.weight`), this.p(`${pre}.attn.q.bias`), N, D, D);
      e.linearForward(kvNew, ln, this.p(`${pre}.attn.kv.weight`), this.p(`${pre}.attn.kv.bias`), N, D, 2 * D);
      feeds.forEach((f, fi) => {
        const T = f.ids.length;
        f.slot.kv[li].set(kvNew.subarray(starts[fi] * 2 * D, (starts[fi] + T) * 2 * D), f.slot.pos * 2 * D);
      });
      if (decoding) {
        // a decoding step (a few new tokens per sequence): every sequence's attention over its own cache in one
        // call, parallel over (sequence, head) — one call per sequence ran each on one thread
        e.attentionDecode(
          y,
          q,
          feeds.map((f) => f.slot.kv[li]),
          nNew,
          nKeys,
          row0,
          H,
          hd,
        );
      } else {
        feeds.forEach((f, fi) => {
          const T = f.ids.length,
            p0 = f.slot.pos,
            S = p0 + T;
          // a prompt keeps only log-sum-exps (no [T, S] buffer); a few new tokens take the probs kernel's dot
          // products, cheaper than the blocked products at T ≤ 4
          const saved = T > 4 ? { lse: s.get("lse", H * T) } : { probs: s.get("probs", H * T * S) };
          attention(
            e,
            { out: y.subarray(starts[fi] * D), ...saved, q: q.subarray(starts[fi] * D), kv: f.slot.kv[li] },
            { seqs: 1, T, S, heads: H, headDim: hd, causal: true, qpos0: p0 },
          );
        });
      }
      e.linearForward(tmp, y, this.p(`${pre}.attn.o.weight`), this.p(`${pre}.attn.o.bias`), N, D, D);
      const xa = s.get(li % 2 ? "xa1" : "xa0", N * D);
      e.add(xa, x, tmp, N * D);
      x = xa;
      // ---- chunked cross-attention
      const ci = this.cca.indexOf(li);
      if (ci >= 0) this.cca_(li, ci, feeds, starts, x, N);
      // ---- MLP
      x = this.mlp(pre, x, N, li % 2 ? "xo1" : "xo0");
    }
    for (const f of feeds) {
      for (let i = 0; i < f.ids.length; i++) f.slot.ids.push(f.ids[i]);
      f.slot.pos += f.ids.length;
    }
    // ---- logits
    const V = c.vocab;
    let rows = x,
      R = N;
    if (!opts.allLogits) {
      R = feeds.length;
      rows = s.get("lastRows", R * D);
      feeds.forEach((f, fi) =>
        rows.set(x.subarray((starts[fi] + f.ids.length - 1) * D, (starts[fi] + f.ids.length) * D), fi * D),
      );
    }
    const lnf = s.get("lnf", R * D);
    e.layernormForward(lnf, mean, rstd, rows, this.p("lnf.weight"), this.p("lnf.bias"), R, D);
    const logits = new Float32Array(R * V);
    e.linearForward(logits, lnf, wte, null, R, D, V);
    return logits;
  }

  /** x + mlp(ln2(x)) of layer `pre` over `rows` rows, into the scratch buffer `outName` */
  private mlp(pre: string, x: Float32Array, rows: number, outName: string): Float32Array {
    const e = this.e,
      D = this.D,
      s = this.s;
    const ln = s.get("mln", rows * D),
      mean = s.get("mmean", rows),
      rstd = s.get("mrstd", rows);
    const fc = s.get("mfc", rows * 4 * D),
      g = s.get("mg", rows * 4 * D),
      tmp = s.get("mtmp", rows * D);
    e.layernormForward(ln, mean, rstd, x, this.p(`${pre}.ln2.weight`), this.p(`${pre}.ln2.bias`), rows, D);
    e.linearForward(fc, ln, this.p(`${pre}.mlp.fc.weight`), this.p(`${pre}.mlp.fc.bias`), rows, D, 4 * D);
    e.geluForward(g, fc, rows * 4 * D);
    e.linearForward(tmp, g, this.p(`${pre}.mlp.proj.weight`), this.p(`${pre}.mlp.proj.bias`), rows, 4 * D, D);
    const out = s.get(outName, rows * D);
    e.add(out, x, tmp, rows * D);
    return out;
  }

  /** CCA layer li (the ci-th CCA layer): x += gate · xattn(lnc(x), encoded neighbours of the chunk each row reads) */
  private cca_(li: number, ci: number, feeds: Feed[], starts: number[], x: Float32Array, N: number): void {
    const model = this.model,
      c = model.config,
      e = this.e,
      D = this.D,
      H = c.heads,
      m = c.chunk;
    const pre = `blocks.${li}`,
      s = this.s,
      kr = c.k * c.r,
      S = kr + (c.retrieval_null_kv ? 1 : 0); // keys per chunk
    const lnc = s.get("lnc", N * D),
      mean = s.get("cmean", N),
      rstd = s.get("crstd", N);
    e.layernormForward(lnc, mean, rstd, x, this.p(`${pre}.lnc.weight`), this.p(`${pre}.lnc.bias`), N, D);
    if (ci === 0) {
      // the first CCA layer's activations are what the encoder reads: keep them, then encode completed chunks
      feeds.forEach((f, fi) => {
        f.slot.h!.set(lnc.subarray(starts[fi] * D, (starts[fi] + f.ids.length) * D), f.slot.pos * D);
        if (model.gate === 0) return; // nothing reads the neighbours: none needed, none encoded
        for (const u of this.chunksCompleted(f.slot.pos, f.slot.pos + f.ids.length)) {
          const nb = f.neighbours?.get(u);
          if (!nb)
            throw new RetroError("usage", `forward: the feed completes chunk ${u} but brings no neighbours for it`);
          if (nb.length !== kr)
            throw new RetroError(
              "mismatch",
              `forward: neighbours of chunk ${u} have ${nb.length} tokens, expected k·r = ${kr}`,
            );
          f.slot.neighbours.set(u, nb);
          const t0 = performance.now();
          this.encodeChunk(f.slot, u, nb);
          this.timing.encodeS += (performance.now() - t0) / 1000;
          this.timing.chunks++;
        }
      });
    }
    if (model.gate === 0) return;
    // rows that read a chunk: position t reads chunk u = ⌊(t+1)/m⌋ − 1; group consecutive rows by (feed, chunk)
    const groups: { fi: number; u: number; row0: number; T: number; qpos0: number }[] = [];
    feeds.forEach((f, fi) => {
      for (let i = 0; i < f.ids.length; i++) {
        const t = f.slot.pos + i,
          u = Math.floor((t + 1) / m) - 1;
        if (u < 0) continue;
        const last = groups[groups.length - 1];
        if (last && last.fi === fi && last.u === u) last.T++;
        else groups.push({ fi, u, row0: starts[fi] + i, T: 1, qpos0: t - u * m });
      }
    });
    if (!groups.length) return;
    const R = groups.reduce((a, gq) => a + gq.T, 0);
    const hq = s.get("hq", R * D);
    let r = 0;
    for (const gq of groups) hq.set(lnc.subarray(gq.row0 * D, (gq.row0 + gq.T) * D), r * D), (r += gq.T);
    const cq = s.get("cq", R * D),
      cy = s.get("cy", R * D),
      co = s.get("co", R * D),
      probs = s.get("cprobs", H * R * S);
    r = 0;
    const runs = groups.map((gq) => {
      const kv = feeds[gq.fi].slot.ckv[ci].get(gq.u);
      if (!kv) throw new Error(`internal: chunk ${gq.u} was never encoded`);
      const run = { row0: r, seqs: 1, T: gq.T, qpos0: gq.qpos0, kv };
      r += gq.T;
      return run;
    });
    model.ccaQuery(li, { hs: hq, cq, cy, probs, co }, R, runs);
    r = 0;
    for (const gq of groups) {
      e.axpy(x.subarray(gq.row0 * D, (gq.row0 + gq.T) * D), co.subarray(r * D), model.gate, gq.T * D);
      r += gq.T;
    }
  }

  /**
   * Encode chunk u's neighbours [k·r] reading the chunk's activations and keep each CCA layer's keys/values: the
   * model's own encoder and CCA key/value path (Model.encodeChunkForDecoding), the code training runs.
   */
  private encodeChunk(slot: Slot, u: number, nb: Int32Array): void {
    const m = this.model.config.chunk,
      D = this.D;
    const kvs = this.model.encodeChunkForDecoding(nb, slot.h!.subarray(u * m * D, (u + 1) * m * D));
    kvs.forEach((ckv, ci) => slot.ckv[ci].set(u, ckv));
  }
}
