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

/**
 * What the forward keeps for the backward pass: probs [seqs, H, T, S], or only each query row's log-sum-exp,
 * lse [seqs, H, T] (no [T, S] buffer per head: the backward recomputes the probabilities in blocks of rows)
 */
export type AttentionSaved = { probs: Float32Array } | { lse: Float32Array };

/** out [seqs, T, D] = softmax(q kᵀ / √hd) v per head */
export function attention(
  e: Engine,
  io: { out: Float32Array; q: Float32Array; kv: Float32Array } & AttentionSaved,
  s: AttentionShape,
): void {
  const D = s.heads * s.headDim;
  const [fn, saved] = "lse" in io ? [e.attentionForwardLse, io.lse] : [e.attentionForward, io.probs];
  fn.call(
    e,
    io.out,
    saved,
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

/** dq and dkv (overwritten) from dout and what the forward kept (with lse, `causal` as in the forward) */
export function attentionBackward(
  e: Engine,
  io: { dq: Float32Array; dkv: Float32Array; dout: Float32Array; q: Float32Array; kv: Float32Array } & AttentionSaved,
  s: AttentionShape,
): void {
  const D = s.heads * s.headDim;
  const args = [io.q, 0, D, io.kv, 0, D, 2 * D, s.seqs, s.T, s.S, s.heads, s.headDim, s.seqsPerKv ?? 1] as const;
  if ("lse" in io) e.attentionBackwardLse(io.dq, io.dkv, io.dout, io.lse, ...args, s.causal ? 1 : 0);
  else e.attentionBackward(io.dq, io.dkv, io.dout, io.probs, ...args);
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
