/**
 * Typed, named-argument wrappers over the engine's long positional kernels (attention, rotary positions), in
 * the one layout the model uses: queries [rows, H·hd] and packed keys/values [rows, 2·H·hd] (a row's keys,
 * then its values). The engine interface stays flat (it mirrors the C++ signatures one to one).
 */
import type { Engine } from "./native.ts";

export interface AttentionShape {
  /** query sequences */
  seqs: number;
  /** queries per sequence */
  T: number;
  /** keys per key sequence */
  S: number;
  heads: number;
  headDim: number;
  /** key j visible to query i iff j ≤ qpos0 + i */
  causal?: boolean;
  /** query sequences per key sequence (the k neighbours reading one chunk; default 1) */
  seqsPerKv?: number;
  /** position of the first query among the keys (causal; the cache length when decoding) */
  qpos0?: number;
}

/** out [seqs, T, D] = softmax(q kᵀ / √hd) v per head; probs [seqs, H, T, S] kept for the backward pass */
export function attention(
  e: Engine,
  io: { out: Float32Array; probs: Float32Array; q: Float32Array; kv: Float32Array },
  s: AttentionShape,
): void {
  const D = s.heads * s.headDim;
  e.attentionForward(
    io.out,
    io.probs,
    io.q,
    0,
    D,
    io.kv,
    0,
    D,
    2 * D,
    s.seqs,
    s.T,
    s.S,
    s.heads,
    s.headDim,
    s.causal ? 1 : 0,
    s.seqsPerKv ?? 1,
    s.qpos0 ?? 0,
  );
}

/** dq and dkv (overwritten) from dout and the forward's probs */
export function attentionBackward(
  e: Engine,
  io: {
    dq: Float32Array;
    dkv: Float32Array;
    dout: Float32Array;
    probs: Float32Array;
    q: Float32Array;
    kv: Float32Array;
  },
  s: AttentionShape,
): void {
  const D = s.heads * s.headDim;
  e.attentionBackward(
    io.dq,
    io.dkv,
    io.dout,
    io.probs,
    io.q,
    0,
    D,
    io.kv,
    0,
    D,
    2 * D,
    s.seqs,
    s.T,
    s.S,
    s.heads,
    s.headDim,
    s.seqsPerKv ?? 1,
  );
}

export interface RotaryOptions {
  rows: number;
  /** floats per row (D for queries; 2D for packed keys/values, of which the keys are rotated) */
  stride: number;
  heads: number;
  headDim: number;
  /** row n sits at position pos[n % pos.length] */
  pos: Int32Array;
  base: number;
  /** 1 rotates, −1 rotates back (a gradient) */
  sign?: 1 | -1;
}

/** rotary positions in place on the first H·hd floats of each row */
export function rotate(e: Engine, x: Float32Array, o: RotaryOptions): void {
  e.rope(x, 0, o.stride, o.rows, o.heads, o.headDim, o.pos, o.pos.length, o.base, o.sign ?? 1);
}
