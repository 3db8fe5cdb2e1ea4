/**
 * LSA embedder (latent semantic analysis): TF-IDF over a learned word vocabulary, projected onto
 * the top `dim` right singular vectors of the TF-IDF matrix of a random sample of the database's
 * chunks. Dense, low-dimensional and topical: chunks that share no rare word can still be close.
 * No pretrained files are needed, so it is an offline default; its fitted state (vocabulary, IDF,
 * projection) is saved with the database.
 *
 * The truncated SVD is a randomized SVD (Halko, Martinsson & Tropp 2011) with power iterations,
 * Cholesky-QR orthonormalisation and a Jacobi eigensolver for the small core: written here because
 * no offline npm package offers a sparse truncated SVD (ml-matrix has only dense full SVD, which
 * would need 50k × 32k dense floats).
 */
import { sha256 } from "../util/fsx.ts";
import { Rng } from "../util/rng.ts";
import { l2normalizeRows, type Embedder } from "./embedder.ts";

const WORD = /[\p{L}\p{N}]+/gu;
const tokens = (t: string) => t.toLowerCase().match(WORD) ?? [];

export interface LsaState {
  vocab: string[];
  idf: Float32Array; // [V]
  proj: Float32Array; // [V, dim]
  dim: number;
}

interface Sparse {
  ptr: Int32Array;
  idx: Int32Array;
  val: Float32Array;
  rows: number;
}

function tfidfRows(texts: string[], index: Map<string, number>, idf: Float32Array): Sparse {
  const ptr = new Int32Array(texts.length + 1);
  const idx: number[] = [],
    val: number[] = [];
  texts.forEach((t, r) => {
    const tf = new Map<number, number>();
    for (const w of tokens(t)) {
      const i = index.get(w);
      if (i !== undefined) tf.set(i, (tf.get(i) ?? 0) + 1);
    }
    let norm = 0;
    const start = idx.length;
    for (const [i, c] of tf) {
      const v = (1 + Math.log(c)) * idf[i];
      idx.push(i), val.push(v);
      norm += v * v;
    }
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let k = start; k < val.length; k++) val[k] *= inv;
    ptr[r + 1] = idx.length;
  });
  return { ptr, idx: Int32Array.from(idx), val: Float32Array.from(val), rows: texts.length };
}

/** Y[n, l] = X[n, V] · W[V, l] */
function mulXW(X: Sparse, W: Float32Array, l: number): Float32Array {
  const Y = new Float32Array(X.rows * l);
  for (let r = 0; r < X.rows; r++)
    for (let k = X.ptr[r]; k < X.ptr[r + 1]; k++) {
      const v = X.val[k],
        wo = X.idx[k] * l,
        yo = r * l;
      for (let j = 0; j < l; j++) Y[yo + j] += v * W[wo + j];
    }
  return Y;
}

/** Z[V, l] = Xᵀ · Q[n, l] */
function mulXtQ(X: Sparse, Q: Float32Array, l: number, V: number): Float32Array {
  const Z = new Float32Array(V * l);
  for (let r = 0; r < X.rows; r++)
    for (let k = X.ptr[r]; k < X.ptr[r + 1]; k++) {
      const v = X.val[k],
        zo = X.idx[k] * l,
        qo = r * l;
      for (let j = 0; j < l; j++) Z[zo + j] += v * Q[qo + j];
    }
  return Z;
}

/** The upper triangle (j ≥ i) of YᵀY for Y [n, l], in float64. */
function gramUpper(Y: Float32Array, n: number, l: number): Float64Array {
  const G = new Float64Array(l * l);
  for (let r = 0; r < n; r++) {
    const o = r * l;
    for (let i = 0; i < l; i++) {
      const yi = Y[o + i];
      if (yi === 0) continue;
      for (let j = i; j < l; j++) G[i * l + j] += yi * Y[o + j];
    }
  }
  return G;
}

/** Orthonormalise the columns of Y [n, l] in place (Cholesky QR, twice for stability). */
function orthonormalize(Y: Float32Array, n: number, l: number): void {
  for (let pass = 0; pass < 2; pass++) {
    const G = gramUpper(Y, n, l);
    // Cholesky G = L Lᵀ (upper triangle stored), with a tiny ridge against rank deficiency
    const L = new Float64Array(l * l);
    let trace = 0;
    for (let i = 0; i < l; i++) trace += G[i * l + i];
    for (let i = 0; i < l; i++) G[i * l + i] += 1e-10 * trace + 1e-30;
    for (let j = 0; j < l; j++) {
      let s = G[j * l + j];
      for (let k = 0; k < j; k++) s -= L[j * l + k] ** 2;
      const d = Math.sqrt(Math.max(s, 1e-30));
      L[j * l + j] = d;
      for (let i = j + 1; i < l; i++) {
        let t = G[j * l + i];
        for (let k = 0; k < j; k++) t -= L[i * l + k] * L[j * l + k];
        L[i * l + j] = t / d;
      }
    }
    // Y ← Y L⁻ᵀ: solve row by row (forward substitution)
    const row = new Float64Array(l);
    for (let r = 0; r < n; r++) {
      const o = r * l;
      for (let j = 0; j < l; j++) {
        let s = Y[o + j];
        for (let k = 0; k < j; k++) s -= row[k] * L[j * l + k];
        row[j] = s / L[j * l + j];
      }
      for (let j = 0; j < l; j++) Y[o + j] = row[j];
    }
  }
}

/**
 * Eigen-decomposition of a symmetric matrix (cyclic Jacobi). Returns eigenvalues and column eigenvectors, descending.
 */
export function symmetricEigen(A: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(A),
    v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1),
          s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p],
            akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k],
            aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p],
            vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y] - a[x * n + x]);
  const values = new Float64Array(n),
    vectors = new Float64Array(n * n);
  order.forEach((o, j) => {
    values[j] = a[o * n + o];
    for (let k = 0; k < n; k++) vectors[k * n + j] = v[k * n + o];
  });
  return { values, vectors };
}

/**
 * The document-frequency floor that scales with the corpus: a word seen once in a large sample is mostly noise
 * (typos, numbers) and costs a row of the projection; in a small corpus it is often the word a query asks for.
 */
export function autoMinDf(sampleChunks: number): number {
  return sampleChunks < 2000 ? 1 : 2;
}

/** Fit vocabulary, IDF and the rank-`dim` projection on sample texts (`minDf` 0 or absent: autoMinDf). */
export function fitLsa(
  texts: string[],
  dim: number,
  opts: { maxVocab?: number; minDf?: number; oversample?: number; powerIters?: number; seed?: number } = {},
): LsaState {
  const { maxVocab = 32768, oversample = 32, powerIters = 2, seed = 1 } = opts;
  const minDf = opts.minDf || autoMinDf(texts.length);
  const df = new Map<string, number>();
  for (const t of texts) for (const w of new Set(tokens(t))) df.set(w, (df.get(w) ?? 0) + 1);
  const vocab = [...df.entries()]
    .filter(([, c]) => c >= minDf)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, maxVocab)
    .map(([w]) => w);
  const V = vocab.length;
  const index = new Map(vocab.map((w, i) => [w, i]));
  const idf = new Float32Array(V);
  vocab.forEach((w, i) => (idf[i] = Math.log((1 + texts.length) / (1 + df.get(w)!)) + 1));
  const X = tfidfRows(texts, index, idf);
  const l = Math.min(dim + oversample, V, texts.length);
  const rng = new Rng(seed);
  const omega = new Float32Array(V * l).map(() => rng.normal());
  let Q = mulXW(X, omega, l);
  orthonormalize(Q, X.rows, l);
  for (let it = 0; it < powerIters; it++) {
    const Z = mulXtQ(X, Q, l, V);
    orthonormalize(Z, V, l);
    Q = mulXW(X, Z, l);
    orthonormalize(Q, X.rows, l);
  }
  // B = Qᵀ X  stored transposed as Bt [V, l]; B Bᵀ = Btᵀ Bt [l, l] = U Σ² Uᵀ; right vectors Vk = Bt U Σ⁻¹
  const Bt = mulXtQ(X, Q, l, V);
  const BBt = gramUpper(Bt, V, l);
  for (let i = 0; i < l; i++) for (let j = 0; j < i; j++) BBt[i * l + j] = BBt[j * l + i];
  const { values, vectors } = symmetricEigen(BBt, l);
  const k = Math.min(dim, l);
  const proj = new Float32Array(V * dim);
  for (let v = 0; v < V; v++)
    for (let j = 0; j < k; j++) {
      const sigma = Math.sqrt(Math.max(values[j], 1e-30));
      let s = 0;
      for (let i = 0; i < l; i++) s += Bt[v * l + i] * vectors[i * l + j];
      proj[v * dim + j] = s / sigma;
    }
  return { vocab, idf, proj, dim };
}

export class LsaEmbedder implements Embedder {
  readonly id: string;
  readonly dim: number;
  private index: Map<string, number>;
  constructor(private state: LsaState) {
    this.dim = state.dim;
    this.index = new Map(state.vocab.map((w, i) => [w, i]));
    const proj = state.proj;
    this.id = `lsa${state.dim}-${sha256(new Uint8Array(proj.buffer, proj.byteOffset, proj.byteLength)).slice(0, 12)}`;
  }
  async embed(texts: string[]): Promise<Float32Array> {
    const X = tfidfRows(texts, this.index, this.state.idf);
    const out = mulXW(X, this.state.proj, this.dim);
    l2normalizeRows(out, this.dim);
    return out;
  }
}
