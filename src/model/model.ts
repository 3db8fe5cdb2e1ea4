/**
 * GPT and Retro on the native engine, forward and backward written out by hand (llm.c style), read top to
 * bottom. The model is exactly the PyTorch peer's (`../shared/peers/torch_retro_step.py`):
 *
 *   x = wte[ids] + wpe[:n]
 *   per decoder layer i:   x += attn(ln1(x), causal)
 *                          if i+1 in cca_layers:  h = lnc(x)
 *                              (first CCA layer: enc = encoder(wte[nbr] + wpe[:r], chunk activations h))
 *                              x += gate * shift_right(pad, xattn(shift_left(pad, h) per chunk of m,
 *                                                          enc of that chunk))
 *                          x += mlp(ln2(x))
 *   logits = lnf(x) @ wte^T
 *   encoder layer j:       e += attn(ln1(e)) (bidirectional);  j == 0: e += xattn(lnx(e), h of e's chunk);
 *                          e += mlp(ln2(e))
 *
 * with pad = (n-1) % m: the token at position t >= pad reads the neighbours of chunk (t-pad)/m, so no token sees
 * neighbours retrieved for a chunk it has not finished. Shapes: decoder rows N = B*n, encoder rows NE = B*l*k*r.
 *
 * With `retrieval_rope`, queries and keys inside the retrieval path are rotated (rope) after their projections:
 * CCA queries at m-1+i (i = place in the shifted window), CCA keys and the encoder's self-attention at 0..r-1.
 * The rotated q / kv are what the activations keep (attention backward needs them); their gradients are
 * rotated back before the projections' backward. With `retrieval_null_kv` each chunk's CCA keys/values get one
 * more row, the layer's learned `xattn.null_kv` (ckvn = [ckv of the chunk; null_kv] per chunk).
 */
import * as os from "node:os";
import type { Engine } from "../engine/native.ts";
import { loadEngine } from "../engine/native.ts";
import { attention, attentionBackward, rotate } from "../engine/ops.ts";
import { RetroError } from "../util/errors.ts";
import { ROPE_BASE, type ModelConfig } from "./config.ts";
import { ParamStore, paramSpecs, type Param, type ParamGroup } from "./params.ts";
import { DEFAULT_SEED } from "../util/rng.ts";

export interface Batch {
  B: number;
  /** tokens per sequence (≤ seq; a multiple of chunk for Retro) */
  n: number;
  /** [B, n] input tokens */
  ids: Int32Array;
  /** [B, n] next tokens */
  targets: Int32Array;
  /** [B, n] per-token loss weight (1 = counts); omitted = all tokens count */
  mask?: Float32Array;
  /** [B, n/chunk, k, r] neighbour tokens (Retro) */
  neighbours?: Int32Array;
}

/** the cross-attention activations of a layer that has one */
interface CrossActs {
  lnc: Float32Array;
  lncm: Float32Array;
  lncr: Float32Array;
  /** decoder CCA: the m−1-shifted copy of lnc the queries read */
  hs?: Float32Array;
  cq: Float32Array;
  ckv: Float32Array;
  cprobs: Float32Array;
  cy: Float32Array;
  co: Float32Array;
  ckvn?: Float32Array; // retrieval_null_kv: per chunk its k·r keys/values, then the null one
  xc: Float32Array; // residual after cross-attention
}

/** the activations of one transformer layer (decoder or encoder) */
interface LayerActs {
  x: Float32Array; // residual input
  ln1: Float32Array;
  ln1m: Float32Array;
  ln1r: Float32Array;
  q: Float32Array;
  kv: Float32Array;
  /** [seqs, H, T] each query row's log-sum-exp (self-attention keeps no [T, T] probabilities: ops.attention) */
  lse: Float32Array;
  y: Float32Array;
  xa: Float32Array; // residual after self-attention
  /** cross-attention (decoder CCA layer / encoder layer 0); absent in other layers */
  cross?: CrossActs;
  ln2: Float32Array;
  ln2m: Float32Array;
  ln2r: Float32Array;
  fc: Float32Array;
  g: Float32Array;
}

/** Memory this process may use: RETRO_MAX_MEMORY_GB, else 80 % of the machine's RAM. */
export function memoryLimit(): number {
  const gb = Number(process.env.RETRO_MAX_MEMORY_GB ?? 0);
  return gb > 0 ? gb * 2 ** 30 : 0.8 * os.totalmem();
}

function checkMemory(bytes: number, what: string): void {
  const limit = memoryLimit();
  if (!(bytes <= limit)) {
    throw new RetroError(
      "usage",
      `${what} would need ${(bytes / 2 ** 30).toFixed(1)} GiB, more than the ${(limit / 2 ** 30).toFixed(1)} GiB ` +
        `available (RETRO_MAX_MEMORY_GB); use a smaller model, batch or sequence`,
    );
  }
}

/**
 * Whole-model activations and the backward pass's scratch, sized for one batch shape (decoder rows N, encoder rows
 * NE).
 */
interface ModelBuffers {
  /** [N, D] decoder output, its final layernorm (and mean / rstd per row) */
  xL: Float32Array;
  lnf: Float32Array;
  lnfm: Float32Array;
  lnfr: Float32Array;
  /** [N, vocab] logits (gradient of the loss after the fused cross-entropy); [N] per-token losses */
  logits: Float32Array;
  losses: Float32Array;
  /**
   * [NE, D] encoder output (the neighbours as CCA reads them); [max(N, NE), D] sublayer output before the residual add
   */
  encOut: Float32Array;
  tmp: Float32Array;
  // backward scratch, shared by decoder and encoder: gradients w.r.t. the residual stream (dx decoder, de encoder),
  // layernorm output, attention q / kv / output, MLP (dg after GELU, dfc before), CCA output, chunk activations (dh),
  // shifted chunk activations (dhs), CCA keys/values, queries, attention output
  dx: Float32Array;
  de: Float32Array;
  dln: Float32Array;
  dq: Float32Array;
  dkv: Float32Array;
  dy: Float32Array;
  dg: Float32Array;
  dfc: Float32Array;
  dco: Float32Array;
  dh: Float32Array;
  dhs: Float32Array;
  dckv: Float32Array;
  dcq: Float32Array;
  dcy: Float32Array;
  /** retrieval_null_kv: gradient of the CCA keys/values with the null rows (else empty) */
  dckvn: Float32Array;
}

export class Model {
  readonly config: ModelConfig;
  readonly store: ParamStore;
  readonly engine: Engine;
  /** CCA output scale (starts at config.gate; 0 = decoder alone) */
  gate: number;
  /** groups whose gradients are not needed (their weights are frozen) */
  readonly frozen = new Set<ParamGroup>();

  private shape = "";
  private dec: LayerActs[] = [];
  private enc: LayerActs[] = [];
  private a!: ModelBuffers;
  private last: Batch | null = null;
  private logitsKept: Float32Array | null = null;
  /** rotary positions (retrieval_rope): CCA queries m-1 … 2m-2, neighbour tokens 0 … r-1; null without rope */
  private readonly ropeQ: Int32Array | null = null;
  private readonly ropeK: Int32Array | null = null;

  constructor(config: ModelConfig, opts: { engine?: Engine; seed?: number } = {}) {
    this.config = config;
    this.gate = config.gate;
    this.engine = opts.engine ?? loadEngine();
    const specs = paramSpecs(config);
    const nParams = specs.reduce((a, sp) => a + sp.shape.reduce((x, y) => x * y, 1), 0);
    // weights, gradients and AdamW's two moments: refuse a model that cannot fit before allocating it
    checkMemory(
      nParams * 4 * 4,
      `a model of ${(nParams / 1e6).toFixed(1)}M parameters (weights, gradients, optimizer state)`,
    );
    this.store = new ParamStore(specs);
    this.store.init(opts.seed ?? DEFAULT_SEED);
    if (config.model === "retro" && config.retrieval_rope) {
      this.ropeQ = Int32Array.from({ length: config.chunk }, (_, i) => config.chunk - 1 + i);
      this.ropeK = Int32Array.from({ length: config.r }, (_, i) => i);
    }
  }

  /** out = per chunk sequence its S = k·r key/value rows of kv, then the null row (retrieval_null_kv) */
  private withNullKv(out: Float32Array, kv: Float32Array, nullKv: Float32Array, seqs: number): Float32Array {
    const W = 2 * this.config.d,
      S = this.config.k * this.config.r;
    for (let s = 0; s < seqs; s++) {
      out.set(kv.subarray(s * S * W, (s + 1) * S * W), s * (S + 1) * W);
      out.set(nullKv, (s * (S + 1) + S) * W);
    }
    return out;
  }

  /**
   * the reverse of withNullKv for gradients: dkv gets the rows of the neighbours, dNull (if wanted) += the null rows
   */
  private withoutNullKv(dkv: Float32Array, dkvn: Float32Array, dNull: Float32Array | null, seqs: number): void {
    const W = 2 * this.config.d,
      S = this.config.k * this.config.r;
    for (let s = 0; s < seqs; s++) {
      dkv.set(dkvn.subarray(s * (S + 1) * W, (s * (S + 1) + S) * W), s * S * W);
      if (dNull) this.engine.axpy(dNull, dkvn.subarray((s * (S + 1) + S) * W), 1, W);
    }
  }

  /**
   * rotate (sign 1) or rotate back (sign -1) the first D floats of rows of `stride` floats, row i at pos[i %
   * pos.length]
   */
  private rope(x: Float32Array, stride: number, rows: number, pos: Int32Array, sign: 1 | -1): void {
    const H = this.config.heads;
    rotate(this.engine, x, { rows, stride, heads: H, headDim: this.config.d / H, pos, base: ROPE_BASE, sign });
  }

  get isRetro(): boolean {
    return this.config.model === "retro";
  }

  private p(name: string): Float32Array {
    return this.store.get(name).data;
  }
  /** gradient view, or null when its group is frozen (the kernel then skips that product) */
  private gOrNull(name: string): Float32Array | null {
    const p: Param = this.store.get(name);
    return this.frozen.has(p.group) ? null : p.grad;
  }
  private g(name: string): Float32Array {
    return this.store.get(name).grad;
  }

  // ------------------------------------------------------------------------------------------ buffers
  private allocate(B: number, n: number): void {
    const key = `${B}x${n}`;
    if (key === this.shape) return;
    // count first (a dry run of the layout below), then allocate: a batch that cannot fit is a clear error
    let floats = 0;
    const EMPTY = new Float32Array(0);
    this.layout(B, n, (k) => ((floats += k), EMPTY));
    checkMemory(
      floats * 4 + this.store.size * 16,
      `activations of a batch of ${B} × ${n} tokens (with the model's ${(this.store.size / 1e6).toFixed(1)}M ` +
        `parameters)`,
    );
    this.layout(B, n, (k) => new Float32Array(k));
    this.shape = key;
  }

  private layout(B: number, n: number, f: (k: number) => Float32Array): void {
    const c = this.config,
      D = c.d,
      H = c.heads;
    const N = B * n;
    const cca = new Set(this.isRetro ? c.cca_layers : []);
    const l = n / c.chunk,
      NE = B * l * c.k * c.r,
      NC = B * l; // NC: chunk sequences
    // cross.shift: the decoder's CCA reads a shifted copy of its input (hs); the encoder's cross-attention does not
    const nul = c.retrieval_null_kv ? 1 : 0,
      SN = c.k * c.r + nul; // CCA keys per chunk (with the null one)
    const layer = (
      rows: number,
      T: number,
      seqs: number,
      cross: null | { q: number; kvRows: number; T: number; S: number; seqs: number; shift: boolean },
    ): LayerActs => ({
      x: f(rows * D),
      ln1: f(rows * D),
      ln1m: f(rows),
      ln1r: f(rows),
      q: f(rows * D),
      kv: f(rows * 2 * D),
      lse: f(seqs * H * T),
      y: f(rows * D),
      xa: f(rows * D),
      ...(cross
        ? {
            cross: {
              lnc: f(rows * D),
              lncm: f(rows),
              lncr: f(rows),
              hs: cross.shift ? f(cross.q * D) : undefined,
              cq: f(cross.q * D),
              ckv: f(cross.kvRows * 2 * D),
              cprobs: f(cross.seqs * H * cross.T * cross.S),
              cy: f(cross.q * D),
              co: f(cross.q * D),
              xc: f(rows * D),
              ...(cross.shift && nul ? { ckvn: f(cross.seqs * SN * 2 * D) } : {}),
            },
          }
        : {}),
      ln2: f(rows * D),
      ln2m: f(rows),
      ln2r: f(rows),
      fc: f(rows * 4 * D),
      g: f(rows * 4 * D),
    });
    this.dec = [];
    for (let i = 0; i < c.layers; i++) {
      this.dec.push(
        layer(N, n, B, cca.has(i + 1) ? { q: N, kvRows: NE, T: c.chunk, S: SN, seqs: NC, shift: true } : null),
      );
    }
    this.enc = [];
    if (cca.size) {
      for (let j = 0; j < c.enc_layers; j++) {
        this.enc.push(
          layer(
            NE,
            c.r,
            B * l * c.k,
            j === 0 ? { q: NE, kvRows: N, T: c.r, S: c.chunk, seqs: B * l * c.k, shift: false } : null,
          ),
        );
      }
    }
    const rowsMax = Math.max(N, NE);
    this.a = {
      xL: f(N * D),
      lnf: f(N * D),
      lnfm: f(N),
      lnfr: f(N),
      logits: f(N * c.vocab),
      losses: f(N),
      encOut: f(NE * D),
      tmp: f(rowsMax * D),
      // backward scratch, shared by decoder and encoder
      dx: f(N * D),
      de: f(NE * D),
      dln: f(rowsMax * D),
      dq: f(rowsMax * D),
      dkv: f(rowsMax * 2 * D),
      dy: f(rowsMax * D),
      dg: f(rowsMax * 4 * D),
      dfc: f(rowsMax * 4 * D),
      dco: f(rowsMax * D),
      dh: f(N * D),
      dhs: f(rowsMax * D),
      dckv: f(rowsMax * 2 * D),
      dcq: f(rowsMax * D),
      dcy: f(rowsMax * D),
      dckvn: f(cca.size && nul ? NC * SN * 2 * D : 0),
    };
  }

  // ------------------------------------------------------------------------------------------ forward
  private checkBatch(b: Batch): void {
    const c = this.config;
    const bad = (m: string) => {
      throw new RetroError("mismatch", `batch: ${m}`);
    };
    if (!Number.isInteger(b.B) || b.B <= 0 || !Number.isInteger(b.n) || b.n <= 0)
      bad(`B and n must be positive integers`);
    if (b.n > c.seq) bad(`sequence of ${b.n} tokens is longer than the model's seq ${c.seq}`);
    if (b.ids.length !== b.B * b.n) bad(`ids has ${b.ids.length} tokens, expected B*n = ${b.B * b.n}`);
    if (b.targets.length !== b.B * b.n) bad(`targets has ${b.targets.length} tokens, expected ${b.B * b.n}`);
    if (b.mask && b.mask.length !== b.B * b.n) bad(`mask has ${b.mask.length} entries, expected ${b.B * b.n}`);
    if (this.isRetro) {
      if (b.n % c.chunk) bad(`Retro needs n (${b.n}) to be a multiple of chunk ${c.chunk}`);
      const want = b.B * (b.n / c.chunk) * c.k * c.r;
      if (!b.neighbours && this.gate !== 0) bad(`Retro needs neighbours [B, l, k, r] = ${want} tokens`);
      else if (b.neighbours && b.neighbours.length !== want)
        bad(
          `neighbours has ${b.neighbours.length} tokens, expected B*l*k*r = ${b.B}*${b.n / c.chunk}*${c.k}*${c.r} = ` +
            `${want}`,
        );
    }
  }

  /** `rope`: positions of the rows (period = its length) for rotary queries and keys, or null */
  private layerForward(
    L: LayerActs,
    pre: string,
    rows: number,
    seqs: number,
    T: number,
    causal: boolean,
    rope: Int32Array | null = null,
  ): void {
    const e = this.engine,
      D = this.config.d,
      H = this.config.heads,
      hd = D / H;
    e.layernormForward(L.ln1, L.ln1m, L.ln1r, L.x, this.p(`${pre}.ln1.weight`), this.p(`${pre}.ln1.bias`), rows, D);
    e.linearForward(L.q, L.ln1, this.p(`${pre}.attn.q.weight`), this.p(`${pre}.attn.q.bias`), rows, D, D);
    e.linearForward(L.kv, L.ln1, this.p(`${pre}.attn.kv.weight`), this.p(`${pre}.attn.kv.bias`), rows, D, 2 * D);
    if (rope) {
      this.rope(L.q, D, rows, rope, 1);
      this.rope(L.kv, 2 * D, rows, rope, 1);
    }
    attention(e, { out: L.y, lse: L.lse, q: L.q, kv: L.kv }, { seqs, T, S: T, heads: H, headDim: hd, causal });
    e.linearForward(this.a.tmp, L.y, this.p(`${pre}.attn.o.weight`), this.p(`${pre}.attn.o.bias`), rows, D, D);
    e.add(L.xa, L.x, this.a.tmp, rows * D);
  }

  private mlpForward(L: LayerActs, pre: string, rows: number, inp: Float32Array, out: Float32Array): void {
    const e = this.engine,
      D = this.config.d;
    e.layernormForward(L.ln2, L.ln2m, L.ln2r, inp, this.p(`${pre}.ln2.weight`), this.p(`${pre}.ln2.bias`), rows, D);
    e.linearForward(L.fc, L.ln2, this.p(`${pre}.mlp.fc.weight`), this.p(`${pre}.mlp.fc.bias`), rows, D, 4 * D);
    e.geluForward(L.g, L.fc, rows * 4 * D);
    e.linearForward(this.a.tmp, L.g, this.p(`${pre}.mlp.proj.weight`), this.p(`${pre}.mlp.proj.bias`), rows, 4 * D, D);
    e.add(out, inp, this.a.tmp, rows * D);
  }

  /**
   * A CCA layer's keys and values of encoded neighbours (the one path for training and the KV-cache decoder): the
   * layer's kv projection of enc [seqs·k·r, D] into ckv [seqs·k·r, 2D], rotated at 0 … r−1 (retrieval_rope), then
   * with retrieval_null_kv the layer's null key/value appended to each chunk's rows (into ckvn). Returns what the
   * attention reads.
   */
  private ccaKv(
    pre: string,
    enc: Float32Array,
    seqs: number,
    ckv: Float32Array,
    ckvn: Float32Array | null,
  ): Float32Array {
    const D = this.config.d,
      NE = seqs * this.config.k * this.config.r;
    this.engine.linearForward(ckv, enc, this.p(`${pre}.xattn.kv.weight`), this.p(`${pre}.xattn.kv.bias`), NE, D, 2 * D);
    if (this.ropeK) this.rope(ckv, 2 * D, NE, this.ropeK, 1);
    return ckvn ? this.withNullKv(ckvn, ckv, this.p(`${pre}.xattn.null_kv`), seqs) : ckv;
  }

  /**
   * CCA's query side in decoder layer `li` (0-based) — the one code training and the KV-cache decoder run:
   * co = xattn.o(attend(rope(xattn.q(hs)), kv)) for `rows` rows of hs (the lnc activations, already shifted so
   * that a row sits in the window of the chunk it reads). Rows come in groups: `seqs` runs of `T` consecutive rows
   * from `row0`, run j reading the j-th [S, 2D] block of its `kv` (S = k·r, + 1 with the null key/value); the
   * first row of a run sits at window offset `qpos0` (m−1 … 2m−2: the rotary position of a query, its neighbour's
   * keys at 0 … r−1). Training: one group of B·l runs of m rows at offset m−1; decoding: a run per (sequence,
   * chunk) of the new rows that read it. `probs` holds H·T·S floats per run, in group order (kept for backward).
   */
  ccaQuery(
    li: number,
    io: { hs: Float32Array; cq: Float32Array; cy: Float32Array; probs: Float32Array; co: Float32Array },
    rows: number,
    groups: readonly { row0: number; seqs: number; T: number; qpos0: number; kv: Float32Array }[],
  ): void {
    const c = this.config,
      e = this.engine,
      D = c.d,
      H = c.heads,
      pre = `blocks.${li}`,
      S = c.k * c.r + (c.retrieval_null_kv ? 1 : 0);
    e.linearForward(io.cq, io.hs, this.p(`${pre}.xattn.q.weight`), this.p(`${pre}.xattn.q.bias`), rows, D, D);
    let p0 = 0;
    for (const g of groups) {
      const q = io.cq.subarray(g.row0 * D);
      if (this.ropeQ)
        this.rope(
          q,
          D,
          g.seqs * g.T,
          Int32Array.from({ length: g.T }, (_, i) => g.qpos0 + i),
          1,
        );
      attention(
        e,
        { out: io.cy.subarray(g.row0 * D), probs: io.probs.subarray(p0), q, kv: g.kv },
        { seqs: g.seqs, T: g.T, S, heads: H, headDim: D / H },
      );
      p0 += g.seqs * H * g.T * S;
    }
    e.linearForward(io.co, io.cy, this.p(`${pre}.xattn.o.weight`), this.p(`${pre}.xattn.o.bias`), rows, D, D);
  }

  /**
   * Incremental decoding (src/generate/decoder.ts): encode one chunk's neighbours nbr [k·r] reading its chunk
   * activations h [m, D] with the model's own encoder, and return each CCA layer's keys/values of them (fresh arrays,
   * [k·r (+1 null row), 2D]) — the same code as the training forward, so the two cannot drift apart.
   */
  encodeChunkForDecoding(nbr: Int32Array, h: Float32Array): Float32Array[] {
    const c = this.config;
    if (!this.isRetro) throw new RetroError("usage", "encodeChunkForDecoding: a GPT has no encoder");
    this.allocate(1, c.chunk);
    this.encode(nbr, h, 1, 1);
    const SN = c.k * c.r + (c.retrieval_null_kv ? 1 : 0);
    return c.cca_layers.map((li) => {
      const L = this.dec[li - 1];
      return this.ccaKv(`blocks.${li - 1}`, this.a.encOut, 1, L.cross!.ckv, L.cross!.ckvn ?? null).slice(
        0,
        SN * 2 * c.d,
      );
    });
  }

  private encode(nbr: Int32Array, h: Float32Array, B: number, l: number): void {
    const c = this.config,
      e = this.engine,
      D = c.d,
      H = c.heads,
      hd = D / H;
    const seqs = B * l * c.k,
      NE = seqs * c.r;
    e.embeddingForward(this.enc[0].x, nbr, this.p("wte.weight"), this.p("wpe.weight"), NE, c.r, D, c.vocab);
    for (let j = 0; j < this.enc.length; j++) {
      const L = this.enc[j],
        pre = `encoder.${j}`;
      const X = L.cross;
      const out = j + 1 < this.enc.length ? this.enc[j + 1].x : this.a.encOut;
      this.layerForward(L, pre, NE, seqs, c.r, false, this.ropeK);
      let cur = L.xa;
      if (X) {
        e.layernormForward(X.lnc, X.lncm, X.lncr, L.xa, this.p(`${pre}.lnx.weight`), this.p(`${pre}.lnx.bias`), NE, D);
        e.linearForward(X.cq, X.lnc, this.p(`${pre}.xattn.q.weight`), this.p(`${pre}.xattn.q.bias`), NE, D, D);
        e.linearForward(
          X.ckv,
          h,
          this.p(`${pre}.xattn.kv.weight`),
          this.p(`${pre}.xattn.kv.bias`),
          B * l * c.chunk,
          D,
          2 * D,
        );
        // each neighbour sequence (k of them per chunk) attends to its chunk's m activations
        attention(
          e,
          { out: X.cy, probs: X.cprobs, q: X.cq, kv: X.ckv },
          { seqs, T: c.r, S: c.chunk, heads: H, headDim: hd, seqsPerKv: c.k },
        );
        e.linearForward(X.co, X.cy, this.p(`${pre}.xattn.o.weight`), this.p(`${pre}.xattn.o.bias`), NE, D, D);
        e.add(X.xc, L.xa, X.co, NE * D);
        cur = X.xc;
      }
      this.mlpForward(L, pre, NE, cur, out);
    }
  }

  /**
   * Forward pass and loss (mean cross-entropy over the tokens the mask keeps). Leaves the gradient of the
   * loss w.r.t. the logits in place for `backward()`; `keepLogits` copies the logits first (see `logits`).
   */
  /**
   * `gradTokens`: the gradient left is that of (sum of this batch's counted losses) / gradTokens instead of their
   * mean — gradient accumulation weighted by counted tokens passes the step's total count to every micro-batch.
   * With the gate at 0 the encoder and the CCA are skipped (their output would be multiplied by 0).
   */
  forward(b: Batch, opts: { keepLogits?: boolean; gradTokens?: number } = {}): { loss: number; tokens: number } {
    this.checkBatch(b);
    const c = this.config,
      e = this.engine,
      D = c.d,
      m = c.chunk;
    const { B, n } = b;
    this.allocate(B, n);
    const N = B * n,
      l = n / m;
    e.embeddingForward(this.dec[0].x, b.ids, this.p("wte.weight"), this.p("wpe.weight"), N, n, D, c.vocab);
    let encoded = false;
    for (let i = 0; i < c.layers; i++) {
      const L = this.dec[i],
        pre = `blocks.${i}`;
      const X = L.cross;
      const out = i + 1 < c.layers ? this.dec[i + 1].x : this.a.xL;
      this.layerForward(L, pre, N, B, n, true);
      let cur = L.xa;
      if (X && this.gate === 0) {
        X.xc.set(L.xa);
        cur = X.xc;
      } else if (X) {
        const pad = (n - 1) % m;
        e.layernormForward(X.lnc, X.lncm, X.lncr, L.xa, this.p(`${pre}.lnc.weight`), this.p(`${pre}.lnc.bias`), N, D);
        if (!encoded) {
          this.encode(b.neighbours!, X.lnc, B, l);
          encoded = true;
        }
        // hs[b, t'] = h[b, pad + t'] for t' < n - pad, zeros after (the m-1 token shift)
        const hs = X.hs!;
        hs.fill(0);
        for (let s = 0; s < B; s++) hs.set(X.lnc.subarray((s * n + pad) * D, (s + 1) * n * D), s * n * D);
        const kv = this.ccaKv(pre, this.a.encOut, B * l, X.ckv, X.ckvn ?? null);
        // every chunk's m rows read it, from the window's offset m−1 on
        this.ccaQuery(i, { hs, cq: X.cq, cy: X.cy, probs: X.cprobs, co: X.co }, N, [
          { row0: 0, seqs: B * l, T: m, qpos0: m - 1, kv },
        ]);
        // x[b, pad + t'] += gate * co[b, t']
        X.xc.set(L.xa);
        if (this.gate !== 0) {
          for (let s = 0; s < B; s++) {
            e.axpy(
              X.xc.subarray((s * n + pad) * D, (s + 1) * n * D),
              X.co.subarray(s * n * D),
              this.gate,
              (n - pad) * D,
            );
          }
        }
        cur = X.xc;
      }
      this.mlpForward(L, pre, N, cur, out);
    }
    e.layernormForward(this.a.lnf, this.a.lnfm, this.a.lnfr, this.a.xL, this.p("lnf.weight"), this.p("lnf.bias"), N, D);
    e.linearForward(this.a.logits, this.a.lnf, this.p("wte.weight"), null, N, D, c.vocab);
    this.logitsKept = opts.keepLogits ? this.a.logits.slice(0, N * c.vocab) : null;
    let count = N;
    if (b.mask) {
      count = 0;
      for (let i = 0; i < N; i++) count += b.mask[i];
    }
    const total = e.crossentropy(
      this.a.logits,
      this.a.losses,
      b.targets,
      b.mask ?? null,
      N,
      c.vocab,
      opts.gradTokens ? 1 / opts.gradTokens : count > 0 ? 1 / count : 0,
    );
    this.last = b;
    return { loss: count > 0 ? total / count : 0, tokens: count };
  }

  /** the logits [B*n, vocab] of the last forward with keepLogits */
  logits(): Float32Array {
    if (!this.logitsKept) throw new Error("logits(): call forward with { keepLogits: true }");
    return this.logitsKept;
  }

  /** per-token losses [B*n] of the last forward (before masking) */
  tokenLosses(): Float32Array {
    return this.a.losses;
  }

  // ------------------------------------------------------------------------------------------ backward
  zeroGrad(): void {
    this.store.grad.fill(0);
  }

  /** self-attention sublayer backward: on entry dres = dL/d(xa); on exit dres = dL/dx */
  private attnBackward(
    L: LayerActs,
    pre: string,
    rows: number,
    seqs: number,
    T: number,
    causal: boolean,
    dres: Float32Array,
    rope: Int32Array | null = null,
  ): void {
    const e = this.engine,
      D = this.config.d,
      H = this.config.heads,
      hd = D / H,
      a = this.a;
    e.linearBackward(
      a.dy,
      this.gOrNull(`${pre}.attn.o.weight`),
      this.gOrNull(`${pre}.attn.o.bias`),
      dres,
      L.y,
      this.p(`${pre}.attn.o.weight`),
      rows,
      D,
      D,
      0,
    );
    attentionBackward(
      e,
      { dq: a.dq, dkv: a.dkv, dout: a.dy, lse: L.lse, q: L.q, kv: L.kv },
      { seqs, T, S: T, heads: H, headDim: hd, causal },
    );
    if (rope) {
      this.rope(a.dq, D, rows, rope, -1);
      this.rope(a.dkv, 2 * D, rows, rope, -1);
    }
    e.linearBackward(
      a.dln,
      this.gOrNull(`${pre}.attn.q.weight`),
      this.gOrNull(`${pre}.attn.q.bias`),
      a.dq,
      L.ln1,
      this.p(`${pre}.attn.q.weight`),
      rows,
      D,
      D,
      0,
    );
    e.linearBackward(
      a.dln,
      this.gOrNull(`${pre}.attn.kv.weight`),
      this.gOrNull(`${pre}.attn.kv.bias`),
      a.dkv,
      L.ln1,
      this.p(`${pre}.attn.kv.weight`),
      rows,
      D,
      2 * D,
      1,
    );
    e.layernormBackward(
      dres,
      this.g(`${pre}.ln1.weight`),
      this.g(`${pre}.ln1.bias`),
      a.dln,
      L.x,
      this.p(`${pre}.ln1.weight`),
      L.ln1m,
      L.ln1r,
      rows,
      D,
      1,
    );
  }

  /** MLP sublayer backward: on entry dres = dL/d(out); on exit dres = dL/d(inp) */
  private mlpBackward(L: LayerActs, pre: string, rows: number, inp: Float32Array, dres: Float32Array): void {
    const e = this.engine,
      D = this.config.d,
      a = this.a;
    e.linearBackward(
      a.dg,
      this.gOrNull(`${pre}.mlp.proj.weight`),
      this.gOrNull(`${pre}.mlp.proj.bias`),
      dres,
      L.g,
      this.p(`${pre}.mlp.proj.weight`),
      rows,
      4 * D,
      D,
      0,
    );
    e.geluBackward(a.dfc, L.fc, a.dg, rows * 4 * D);
    e.linearBackward(
      a.dln,
      this.gOrNull(`${pre}.mlp.fc.weight`),
      this.gOrNull(`${pre}.mlp.fc.bias`),
      a.dfc,
      L.ln2,
      this.p(`${pre}.mlp.fc.weight`),
      rows,
      D,
      4 * D,
      0,
    );
    e.layernormBackward(
      dres,
      this.g(`${pre}.ln2.weight`),
      this.g(`${pre}.ln2.bias`),
      a.dln,
      inp,
      this.p(`${pre}.ln2.weight`),
      L.ln2m,
      L.ln2r,
      rows,
      D,
      1,
    );
  }

  /** encoder backward from a.de = dL/d(encOut); adds dL/d(chunk activations) into dh */
  private encodeBackward(nbr: Int32Array, h: Float32Array, dh: Float32Array, B: number, l: number): void {
    const c = this.config,
      e = this.engine,
      D = c.d,
      H = c.heads,
      hd = D / H,
      a = this.a;
    const seqs = B * l * c.k,
      NE = seqs * c.r;
    const de = a.de;
    for (let j = this.enc.length - 1; j >= 0; j--) {
      const L = this.enc[j],
        pre = `encoder.${j}`;
      const X = L.cross;
      this.mlpBackward(L, pre, NE, X?.xc ?? L.xa, de);
      if (X) {
        e.linearBackward(
          a.dcy,
          this.gOrNull(`${pre}.xattn.o.weight`),
          this.gOrNull(`${pre}.xattn.o.bias`),
          de,
          X.cy,
          this.p(`${pre}.xattn.o.weight`),
          NE,
          D,
          D,
          0,
        );
        attentionBackward(
          e,
          { dq: a.dcq, dkv: a.dckv, dout: a.dcy, probs: X.cprobs, q: X.cq, kv: X.ckv },
          { seqs, T: c.r, S: c.chunk, heads: H, headDim: hd, seqsPerKv: c.k },
        );
        e.linearBackward(
          dh,
          this.gOrNull(`${pre}.xattn.kv.weight`),
          this.gOrNull(`${pre}.xattn.kv.bias`),
          a.dckv,
          h,
          this.p(`${pre}.xattn.kv.weight`),
          B * l * c.chunk,
          D,
          2 * D,
          1,
        );
        e.linearBackward(
          a.dln,
          this.gOrNull(`${pre}.xattn.q.weight`),
          this.gOrNull(`${pre}.xattn.q.bias`),
          a.dcq,
          X.lnc,
          this.p(`${pre}.xattn.q.weight`),
          NE,
          D,
          D,
          0,
        );
        e.layernormBackward(
          de,
          this.g(`${pre}.lnx.weight`),
          this.g(`${pre}.lnx.bias`),
          a.dln,
          L.xa,
          this.p(`${pre}.lnx.weight`),
          X.lncm,
          X.lncr,
          NE,
          D,
          1,
        );
      }
      this.attnBackward(L, pre, NE, seqs, c.r, false, de, this.ropeK);
    }
    e.embeddingBackward(this.g("wte.weight"), this.g("wpe.weight"), de, nbr, NE, c.r, D, c.vocab);
  }

  /** Gradients of the last forward's loss, accumulated into store.grad (call zeroGrad() first). */
  backward(): void {
    const b = this.last;
    if (!b) throw new Error("backward() without a forward()");
    this.last = null; // the dlogits buffer is consumed
    const c = this.config,
      e = this.engine,
      D = c.d,
      H = c.heads,
      hd = D / H,
      m = c.chunk,
      a = this.a;
    const { B, n } = b,
      N = B * n,
      l = n / m;
    const dx = a.dx;
    e.linearBackward(a.dln, this.gOrNull("wte.weight"), null, a.logits, a.lnf, this.p("wte.weight"), N, D, c.vocab, 0);
    e.layernormBackward(
      dx,
      this.g("lnf.weight"),
      this.g("lnf.bias"),
      a.dln,
      a.xL,
      this.p("lnf.weight"),
      a.lnfm,
      a.lnfr,
      N,
      D,
      0,
    );
    if (this.isRetro) a.de.fill(0);
    const first = this.isRetro ? c.cca_layers[0] - 1 : -1;
    for (let i = c.layers - 1; i >= 0; i--) {
      const L = this.dec[i],
        pre = `blocks.${i}`;
      const X = L.cross;
      this.mlpBackward(L, pre, N, X?.xc ?? L.xa, dx);
      if (X && this.gate !== 0) {
        const pad = (n - 1) % m,
          NE = B * l * c.k * c.r;
        // dco[b, t'] = gate * dx[b, pad + t']
        a.dco.fill(0, 0, N * D);
        if (this.gate !== 0) {
          for (let s = 0; s < B; s++)
            e.axpy(
              a.dco.subarray(s * n * D),
              dx.subarray((s * n + pad) * D, (s + 1) * n * D),
              this.gate,
              (n - pad) * D,
            );
        }
        e.linearBackward(
          a.dcy,
          this.gOrNull(`${pre}.xattn.o.weight`),
          this.gOrNull(`${pre}.xattn.o.bias`),
          a.dco,
          X.cy,
          this.p(`${pre}.xattn.o.weight`),
          N,
          D,
          D,
          0,
        );
        if (X.ckvn) {
          attentionBackward(
            e,
            { dq: a.dcq, dkv: a.dckvn, dout: a.dcy, probs: X.cprobs, q: X.cq, kv: X.ckvn },
            { seqs: B * l, T: m, S: c.k * c.r + 1, heads: H, headDim: hd },
          );
          this.withoutNullKv(a.dckv, a.dckvn, this.gOrNull(`${pre}.xattn.null_kv`), B * l);
        } else {
          attentionBackward(
            e,
            { dq: a.dcq, dkv: a.dckv, dout: a.dcy, probs: X.cprobs, q: X.cq, kv: X.ckv },
            { seqs: B * l, T: m, S: c.k * c.r, heads: H, headDim: hd },
          );
        }
        if (this.ropeQ && this.ropeK) {
          this.rope(a.dcq, D, N, this.ropeQ, -1);
          this.rope(a.dckv, 2 * D, NE, this.ropeK, -1);
        }
        e.linearBackward(
          a.de,
          this.gOrNull(`${pre}.xattn.kv.weight`),
          this.gOrNull(`${pre}.xattn.kv.bias`),
          a.dckv,
          a.encOut,
          this.p(`${pre}.xattn.kv.weight`),
          NE,
          D,
          2 * D,
          1,
        );
        e.linearBackward(
          a.dhs,
          this.gOrNull(`${pre}.xattn.q.weight`),
          this.gOrNull(`${pre}.xattn.q.bias`),
          a.dcq,
          X.hs!,
          this.p(`${pre}.xattn.q.weight`),
          N,
          D,
          D,
          0,
        );
        // dh[b, pad + t'] = dhs[b, t']
        const dh = a.dh;
        dh.fill(0);
        for (let s = 0; s < B; s++) dh.set(a.dhs.subarray(s * n * D, (s * n + n - pad) * D), (s * n + pad) * D);
        if (i === first) this.encodeBackward(b.neighbours!, X.lnc, dh, B, l);
        e.layernormBackward(
          dx,
          this.g(`${pre}.lnc.weight`),
          this.g(`${pre}.lnc.bias`),
          dh,
          L.xa,
          this.p(`${pre}.lnc.weight`),
          X.lncm,
          X.lncr,
          N,
          D,
          1,
        );
      }
      this.attnBackward(L, pre, N, B, n, true, dx);
    }
    e.embeddingBackward(this.g("wte.weight"), this.g("wpe.weight"), dx, b.ids, N, n, D, c.vocab);
  }

  /** Training FLOPs of one forward+backward over B sequences of n tokens (matmuls and attention products). */
  flops(B: number, n: number): number {
    const c = this.config,
      D = c.d,
      N = B * n;
    const lin = (rows: number, i: number, o: number) => 6 * rows * i * o; // fwd 2, bwd 4
    const att = (seqs: number, T: number, S: number) => 3 * 2 * 2 * seqs * T * S * D; // QK^T and PV, fwd + 2x bwd
    let f = lin(N, D, c.vocab);
    const layer = (rows: number) => lin(rows, D, D) * 2 + lin(rows, D, 2 * D) + lin(rows, D, 4 * D) * 2;
    f += c.layers * (layer(N) + att(B, n, n));
    if (this.isRetro) {
      const l = n / c.chunk,
        seqs = B * l * c.k,
        NE = seqs * c.r;
      for (let i = 0; i < c.cca_layers.length; i++)
        f += lin(N, D, D) * 2 + lin(NE, D, 2 * D) + att(B * l, c.chunk, c.k * c.r);
      f += c.enc_layers * (layer(NE) + att(seqs, c.r, c.r));
      f += lin(NE, D, D) * 2 + lin(B * l * c.chunk, D, 2 * D) + att(seqs, c.r, c.chunk);
    }
    return f;
  }
}
