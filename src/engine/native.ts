/**
 * The native kernel engine (C++ N-API addon in `native/`): the package's prebuilt binary for linux-x64, or built by
 * node-gyp at `npm install` where none fits (native/install.cjs).
 *
 * Two builds sit side by side: `retro_engine` (OpenBLAS sgemm when libopenblas-dev was present at build
 * time, else the portable kernel) and `retro_engine_portable` (always the portable kernel). All buffers are
 * Float32Array / Int32Array views passed without copies; every kernel checks buffer sizes against the
 * dimensions it is given and throws a RangeError naming the argument, instead of reading past a buffer.
 * The op set is small and lives behind this one interface, so another back end (CUDA) can sit beside it.
 */
import { createRequire } from "node:module";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { RetroError } from "../util/errors.ts";

type F = Float32Array;
type I = Int32Array;
type Nullable<T> = T | null;

export interface Engine {
  /** "openblas" or "portable" */
  readonly backend: string;
  embeddingForward(out: F, ids: I, wte: F, wpe: F, N: number, T: number, C: number, V: number): void;
  embeddingBackward(dwte: F, dwpe: F, dout: F, ids: I, N: number, T: number, C: number, V: number): void;
  layernormForward(out: F, mean: F, rstd: F, inp: F, w: F, b: F, N: number, C: number): void;
  layernormBackward(
    dinp: F,
    dw: F,
    db: F,
    dout: F,
    inp: F,
    w: F,
    mean: F,
    rstd: F,
    N: number,
    C: number,
    accumulate: number,
  ): void;
  linearForward(out: F, inp: F, W: F, bias: Nullable<F>, N: number, IN: number, OUT: number): void;
  linearBackward(
    dinp: Nullable<F>,
    dW: Nullable<F>,
    db: Nullable<F>,
    dout: F,
    inp: F,
    W: F,
    N: number,
    IN: number,
    OUT: number,
    accumulate: number,
  ): void;
  geluForward(out: F, inp: F, n: number): void;
  geluBackward(dinp: F, inp: F, dout: F, n: number): void;
  /** causal: key j visible to query i iff j ≤ qpos0 + i (qpos0 defaults to 0; decoding passes the cache length) */
  attentionForward(
    out: F,
    probs: F,
    q: F,
    qOffset: number,
    qStride: number,
    kv: F,
    kOffset: number,
    vOffset: number,
    kvStride: number,
    B: number,
    T: number,
    S: number,
    H: number,
    hd: number,
    causal: number,
    kvdiv: number,
    qpos0?: number,
  ): void;
  attentionBackward(
    dq: F,
    dkv: F,
    dout: F,
    probs: F,
    q: F,
    qOffset: number,
    qStride: number,
    kv: F,
    kOffset: number,
    vOffset: number,
    kvStride: number,
    B: number,
    T: number,
    S: number,
    H: number,
    hd: number,
    kvdiv: number,
  ): void;
  /**
   * Decoding: causal attention of F sequences in one call, each over its own cache kvs[f] (S[f] rows of K then V),
   * its T[f] new query rows at positions S[f] − T[f] …, rows of q / out starting at row0[f]
   */
  attentionDecode(out: F, q: F, kvs: F[], T: I, S: I, row0: I, H: number, hd: number): void;
  /** attentionForward keeping each query row's log-sum-exp, lse [B, H, T], instead of probs [B, H, T, S] */
  attentionForwardLse(
    out: F,
    lse: F,
    q: F,
    qOffset: number,
    qStride: number,
    kv: F,
    kOffset: number,
    vOffset: number,
    kvStride: number,
    B: number,
    T: number,
    S: number,
    H: number,
    hd: number,
    causal: number,
    kvdiv: number,
    qpos0?: number,
  ): void;
  /** attentionBackward from lse (the probabilities recomputed block by block); causal as in the forward */
  attentionBackwardLse(
    dq: F,
    dkv: F,
    dout: F,
    lse: F,
    q: F,
    qOffset: number,
    qStride: number,
    kv: F,
    kOffset: number,
    vOffset: number,
    kvStride: number,
    B: number,
    T: number,
    S: number,
    H: number,
    hd: number,
    kvdiv: number,
    causal: number,
  ): void;
  /** logits become dlogits (scaled by mask * dscale) in place; returns the sum of masked row losses */
  crossentropy(logits: F, losses: F, targets: I, mask: Nullable<F>, N: number, V: number, dscale: number): number;
  adamw(
    p: F,
    g: F,
    m: F,
    v: F,
    n: number,
    lr: number,
    b1: number,
    b2: number,
    eps: number,
    wd: number,
    t: number,
    gscale: number,
  ): void;
  /**
   * rotary positions in place: row n of x (at offset, stride) is at position pos[n % P]; sign 1 forward, -1 backward
   */
  rope(
    x: F,
    offset: number,
    stride: number,
    N: number,
    H: number,
    hd: number,
    pos: I,
    P: number,
    base: number,
    sign: number,
  ): void;
  add(out: F, a: F, b: F, n: number): void;
  axpy(y: F, x: F, alpha: number, n: number): void;
  sumsq(x: F, n: number): number;
  gemm(
    ta: number,
    tb: number,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: F,
    lda: number,
    B: F,
    ldb: number,
    beta: number,
    C: F,
    ldc: number,
  ): void;
  setThreads(n: number): void;
  getThreads(): number;
  /** whether this build can multiply in bf16 (compiled for a CPU with AVX512-BF16) */
  readonly bf16: boolean;
  /**
   * precision of the linear layers' products: "bf16" multiplies in bf16 with fp32 inputs, accumulation and master
   * weights
   */
  setPrecision(p: Precision): void;
  getPrecision(): Precision;
}

export type Precision = "fp32" | "bf16";

/**
 * "blas": the build linked to OpenBLAS (or, where none was installed, the same portable kernel); "portable": the
 * built-in sgemm
 */
export type EngineKind = "blas" | "portable";
export const ENGINE_KINDS: readonly EngineKind[] = ["blas", "portable"];

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * The package's prebuilt engine folders for this machine, best first (native/prebuilt-dirs.cjs, shared with the
 * install script).
 */
export function prebuiltDirs(): string[] {
  const shared = createRequire(import.meta.url)(path.join(ROOT, "native", "prebuilt-dirs.cjs")) as {
    prebuiltDirs: (root: string) => string[];
  };
  return shared.prebuiltDirs(ROOT);
}
const cache = new Map<EngineKind, Engine>();

/**
 * Load the engine. The default is the portable build: on the 2-core AMD EPYC (Zen 4) machines here its sgemm
 * measured 250-300 GFLOP/s against OpenBLAS 0.3.21's ~200 (`npm run bench:train` prints both), so it trains
 * faster. RETRO_ENGINE=blas|portable in the environment picks one. Threads default to the machine's cores
 * (RETRO_THREADS overrides).
 */
export function loadEngine(kind?: EngineKind): Engine {
  const env = process.env.RETRO_ENGINE;
  if (!kind && env && !ENGINE_KINDS.includes(env as EngineKind))
    throw new RetroError("usage", `RETRO_ENGINE=${env}: expected one of ${ENGINE_KINDS.join(", ")}`);
  const k: EngineKind = kind ?? (env as EngineKind | undefined) ?? "portable";
  const hit = cache.get(k);
  if (hit) return hit;
  // libgomp's default wait policy (spin briefly after a parallel region, then sleep) measured best here:
  // "passive" costs ~10 % in futex wake-ups between the many small kernels of a step, "active" burns a core
  // while JavaScript runs between steps. OMP_WAIT_POLICY in the environment still applies.
  // a source build (build/Release, -march=native) first, then the package's prebuilt binary (portable kernel only)
  const name = k === "portable" ? "retro_engine_portable.node" : "retro_engine.node";
  const candidates = [path.join(ROOT, "build", "Release", name), ...prebuiltDirs().map((d) => path.join(d, name))];
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) {
    throw new RetroError(
      "notFound",
      `native engine "${k}" not built (no ` +
        `${path.relative(ROOT, candidates[0])}${k === "portable" ? " or prebuilt binary" : ""}): run \`npm run ` +
        `build:native\` (needs g++ and make; OpenBLAS optional: apt-get install -y libopenblas-dev)`,
    );
  }
  const engine = createRequire(import.meta.url)(file) as Engine;
  const threads = Number(process.env.RETRO_THREADS ?? 0);
  if (threads > 0) engine.setThreads(threads);
  cache.set(k, engine);
  return engine;
}
