/**
 * The approximate-nearest-neighbour index, configured by a description string in Faiss's
 * vocabulary. Backed by usearch (HNSW with f32 / f16 / bf16 / i8 storage; a native, maintained
 * library whose npm package ships its binary). Chosen over LanceDB (~1.5–1.9k queries/s at recall
 * 0.98 in the issue's survey) and faiss-node (does not install offline); README has the figures
 * measured against Faiss (npm run bench:index).
 *
 * Supported descriptions (metric: inner product on L2-normalised vectors = cosine):
 *   Flat                 exact search (brute force, native)
 *   HNSW<M>              HNSW graph, float32 vectors
 *   HNSW<M>,Flat         same
 *   HNSW<M>,SQfp16       float16 vectors (half the memory)
 *   HNSW<M>,SQbf16       bfloat16 vectors
 *   HNSW<M>,SQ8          8-bit scalar quantisation (a quarter of the memory)
 * IVF / PQ / OPQ shapes are refused with a clear error: usearch has no inverted lists or product
 * quantisation, and no other offline-installable library offers them in Node.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import { spawnSync } from "node:child_process";
import { RetroError } from "../util/errors.ts";
import { checkInt } from "../util/numbers.ts";
import { fileCheck, tmpPathFor, type FileCheck } from "../util/fsx.ts";
import type {
  IndexBackend,
  IndexBatch,
  IndexFiles,
  IndexRecord,
  IndexSettings,
  SearchHits,
  SearchIndex,
  SearchQueries,
} from "./types.ts";
import * as path from "node:path";

// usearch's ESM entry cannot locate its prebuilt binary under Node's ESM loader; the CJS entry can.
const require = createRequire(import.meta.url);
const usearch = require("usearch") as typeof import("usearch");

export type Quantization = "f32" | "f16" | "bf16" | "i8";
export interface ParsedDescription {
  kind: "flat" | "hnsw";
  connectivity: number;
  quantization: Quantization;
}

/** The description as usearch reads it, or null when it is not one of its forms (the backend's `accepts`). */
function readDescription(desc: string): ParsedDescription | null {
  const s = desc.replace(/\s+/g, "");
  if (s === "Flat") return { kind: "flat", connectivity: 0, quantization: "f32" };
  const m = /^HNSW(\d+)(?:,(Flat|SQfp16|SQbf16|SQ8))?$/.exec(s);
  if (!m) return null;
  const q: Record<string, Quantization> = { Flat: "f32", SQfp16: "f16", SQbf16: "bf16", SQ8: "i8" };
  return { kind: "hnsw", connectivity: Number(m[1]), quantization: q[m[2] ?? "Flat"] };
}

export function parseDescription(desc: string): ParsedDescription {
  const d = readDescription(desc);
  if (d) return d;
  const s = desc.replace(/\s+/g, "");
  const why = /IVF|PQ|OPQ/.test(s)
    ? " (IVF/PQ/OPQ need inverted lists and product quantisation, which the usearch backend does not have)"
    : "";
  throw new RetroError(
    "usage",
    `index description "${desc}" is not supported${why}; use Flat, HNSW<M>, HNSW<M>,SQfp16, HNSW<M>,SQbf16 or ` +
      `HNSW<M>,SQ8`,
  );
}

export class AnnIndex {
  private index: InstanceType<typeof usearch.Index> | null = null;
  private flat: Float32Array[] = []; // Flat: vectors kept in blocks
  private flatCount = 0;
  readonly spec: ParsedDescription;

  constructor(
    readonly description: string,
    readonly dim: number,
    efConstruction = 128,
    efSearch = 256,
    private threads = 2,
    private addThreads = 1,
  ) {
    this.spec = parseDescription(description);
    if (this.spec.kind === "hnsw") {
      this.index = new usearch.Index({
        dimensions: dim,
        metric: usearch.MetricKind.IP,
        quantization: this.spec.quantization as unknown as import("usearch").ScalarKind,
        connectivity: this.spec.connectivity,
        expansion_add: efConstruction,
        expansion_search: efSearch,
        multi: false,
      });
    }
  }

  get size(): number {
    return this.index ? this.index.size() : this.flatCount;
  }

  /** Add rows [n, dim] with consecutive ids starting at `firstId`. */
  add(vectors: Float32Array, firstId: number): void {
    const n = vectors.length / this.dim;
    if (!Number.isInteger(n))
      throw new RetroError("mismatch", `index add: vector buffer is not a multiple of the index dimension ${this.dim}`);
    if (this.index) {
      const keys = new BigUint64Array(n);
      for (let i = 0; i < n; i++) keys[i] = BigInt(firstId + i);
      this.index.add(keys, vectors, this.addThreads);
    } else {
      if (firstId !== this.flatCount)
        throw new Error(`Flat index: ids must be added in order (expected ${this.flatCount}, got ${firstId})`);
      this.flat.push(vectors.slice());
      this.flatCount += n;
    }
  }

  search(queries: Float32Array, k: number): SearchHits {
    const nq = queries.length / this.dim;
    if (!Number.isInteger(nq))
      throw new RetroError("mismatch", `query vectors have dimension ≠ index dimension ${this.dim}`);
    const ids = new Int32Array(nq * k).fill(-1);
    const scores = new Float32Array(nq * k).fill(-Infinity);
    if (this.index) {
      const res = this.index.search(queries, k, this.threads) as unknown as {
        keys: BigUint64Array;
        distances: Float32Array;
        counts?: BigUint64Array;
      };
      for (let q = 0; q < nq; q++) {
        // a single query comes back as Matches (already cut to its count), a batch as BatchMatches
        const c = res.counts ? Number(res.counts[q]) : res.keys.length;
        for (let j = 0; j < c; j++) {
          ids[q * k + j] = Number(res.keys[q * k + j]);
          scores[q * k + j] = 1 - res.distances[q * k + j]; // usearch "ip" distance = 1 − dot
        }
      }
      return { ids, scores };
    }
    // exact search (usearch's native brute force) block by block, merged into a running top-k
    let base = 0;
    for (const block of this.flat) {
      const nb = block.length / this.dim;
      const kk = Math.min(k, nb);
      const res = usearch.exactSearch(block, queries, this.dim, kk, usearch.MetricKind.IP, this.threads) as unknown as {
        keys: BigUint64Array;
        distances: Float32Array;
      };
      for (let q = 0; q < nq; q++) {
        const so = q * k;
        for (let j = 0; j < kk; j++) {
          const sc = 1 - res.distances[q * kk + j];
          if (!(sc > scores[so + k - 1])) continue;
          let p = k - 1;
          while (p > 0 && scores[so + p - 1] < sc)
            (scores[so + p] = scores[so + p - 1]), (ids[so + p] = ids[so + p - 1]), p--;
          scores[so + p] = sc;
          ids[so + p] = base + Number(res.keys[q * kk + j]);
        }
      }
      base += nb;
    }
    return { ids, scores };
  }

  /** Persist atomically. Flat indexes are stored as raw float32 rows. */
  save(file: string): void {
    const tmp = tmpPathFor(file);
    if (this.index) {
      try {
        this.index.save(tmp);
      } catch (e) {
        // usearch reports a failed write as a bare message ("Failed to serialize into stream"): writing a file
        // fails for the file system's reasons (full, read-only, quota), an io error; the partial file goes
        fs.rmSync(tmp, { force: true });
        const st = fs.statfsSync(path.dirname(file));
        const free = st.bavail * st.bsize;
        throw new RetroError(
          "io",
          `${file}: the index could not be written (${(e as Error).message}; ${(free / 2 ** 20).toFixed(1)} MiB ` +
            `free on its device); free space (or fix the folder's permissions) and re-run: finished work is kept`,
        );
      }
    } else {
      const fd = fs.openSync(tmp, "w");
      for (const b of this.flat) fs.writeSync(fd, new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  }

  /**
   * Load from disk; `mmap` views the file instead of reading it (HNSW only). `check` (the size and CRC-32 the
   * build recorded) is verified first: usearch trusts the file's bytes, and a damaged graph can crash the process.
   */
  static load(
    file: string,
    description: string,
    dim: number,
    expectedSize: number,
    efSearch: number,
    threads: number,
    mmap = true,
    check?: FileCheck,
  ): AnnIndex {
    if (!fs.existsSync(file)) throw new RetroError("notFound", `index file not found: ${file}`);
    if (check) {
      const got = fileCheck(file);
      if (got.bytes !== check.bytes || got.crc32 !== check.crc32) {
        throw new RetroError(
          "corrupt",
          `${file}: ` +
            (got.bytes !== check.bytes ? `${got.bytes} bytes, the build wrote ${check.bytes}` : "checksum mismatch") +
            ' (damaged index); delete it and run "retro db build --out DB" again: the index is built anew from the ' +
            "database",
        );
      }
    } else if (description.replace(/\s+/g, "") !== "Flat") probeInChild(file, description, dim);
    const idx = new AnnIndex(description, dim, 128, efSearch, threads);
    if (idx.index) {
      // usearch maps the file with open(O_NOATIME), which Linux refuses (EPERM) to anyone but the file's owner
      // (or root), even when the file is readable: a database built by another account is read into memory
      const viewable = mmap && ownsOrPrivileged(file);
      try {
        fs.accessSync(file, fs.constants.R_OK);
      } catch (e) {
        throw new RetroError("io", `${file}: cannot read the index (${(e as NodeJS.ErrnoException).code})`);
      }
      try {
        if (viewable) idx.index.view(file);
        else idx.index.load(file);
      } catch (e) {
        const msg = (e as Error).message;
        if (/permission|not permitted|EPERM|EACCES/i.test(msg))
          throw new RetroError("io", `${file}: the file system refused to open the index (${msg})`);
        throw new RetroError(
          "corrupt",
          `${file}: cannot load the index (${msg}); delete it and run "retro db build --out DB" again: the index ` +
            `is built anew from the database`,
        );
      }
      if (idx.index.dimensions() !== dim)
        throw new RetroError("mismatch", `${file}: index dimension ${idx.index.dimensions()} ≠ expected ${dim}`);
    } else {
      const buf = fs.readFileSync(file);
      if (buf.length !== expectedSize * dim * 4)
        throw new RetroError(
          "corrupt",
          `${file}: Flat index holds ${buf.length} bytes, expected ${expectedSize * dim * 4}`,
        );
      idx.flat = [new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length))];
      idx.flatCount = expectedSize;
    }
    if (idx.size !== expectedSize)
      throw new RetroError(
        "corrupt",
        `${file}: index holds ${idx.size} vectors, expected ${expectedSize} (truncated or stale)`,
      );
    return idx;
  }
}

/**
 * An index file with no recorded size and CRC-32 (a database built before the build recorded them) cannot be
 * checked against the build, and usearch trusts its bytes: a damaged graph can crash the process (SIGSEGV).
 * Such a file is first loaded and searched in a child process; if that child dies, the file is refused.
 */
function probeInChild(file: string, description: string, dim: number): void {
  const spec = parseDescription(description);
  const code = `
    const usearch = require(${JSON.stringify(require.resolve("usearch"))});
    const idx = new usearch.Index({ dimensions: ${dim}, metric: usearch.MetricKind.IP,
      quantization: ${JSON.stringify(spec.quantization)}, connectivity: ${spec.connectivity}, multi: false });
    idx.load(${JSON.stringify(file)});
    const q = new Float32Array(${dim} * 8);
    for (let i = 0; i < q.length; i++) q[i] = Math.sin(i * 12.9898) * 0.5;
    idx.search(q, 10, 1);
    process.stdout.write(String(idx.size()));`;
  const r = spawnSync(process.execPath, ["-e", code], { encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0 || r.signal)
    throw new RetroError(
      "corrupt",
      `${file}: the index has no recorded checksum and does not load (${r.signal ?? `exit ${r.status}`}: ` +
        `${(r.stderr || "").trim().split("\n").pop() ?? ""}); it is damaged: rebuild the database`,
    );
}

/** whether open(O_NOATIME) is allowed on the file: the caller owns it, or is root (CAP_FOWNER) */
function ownsOrPrivileged(file: string): boolean {
  const uid = process.getuid?.();
  return uid === undefined || uid === 0 || fs.statSync(file).uid === uid;
}

/** the index file in the database's index/ folder */
export const USEARCH_FILE = "index.usearch";
/** `AnnIndex` behind the `SearchIndex` interface. */
class UsearchIndex implements SearchIndex {
  constructor(readonly ann: AnnIndex) {}
  get description(): string {
    return this.ann.description;
  }
  get size(): number {
    return this.ann.size;
  }
  async add(b: IndexBatch): Promise<void> {
    if (!b.vectors) throw new Error("usearch index: add needs vectors");
    if (b.first !== this.size) throw new Error(`usearch index: ids must continue at ${this.size}, got ${b.first}`);
    this.ann.add(b.vectors, b.first);
  }
  async search(q: SearchQueries, k: number): Promise<SearchHits> {
    if (!q.vectors) throw new Error("usearch index: search needs query vectors");
    return this.ann.search(q.vectors, k);
  }
  async save(dir: string): Promise<IndexFiles> {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, USEARCH_FILE);
    this.ann.save(file);
    return fileCheck(file);
  }
}

/** Flat and HNSW (f32, f16, bf16, i8 vectors) through usearch. */
export const usearchBackend: IndexBackend = {
  name: "usearch",
  forms: "Flat, HNSW<M>, HNSW<M>,SQfp16, HNSW<M>,SQbf16, HNSW<M>,SQ8",
  reads: "vectors",
  // in memory, in the database folder: a store elsewhere is another backend's
  accepts: (description, store) => readDescription(description) !== null && !store,
  check(s: IndexSettings): void {
    const d = parseDescription(s.description);
    if (d.kind === "hnsw")
      checkInt(d.connectivity, `config.index.description "${s.description}": HNSW's M`, { min: 2, max: 512 });
  },
  isSaved: (dir) => fs.existsSync(path.join(dir, USEARCH_FILE)),
  create: (s, dim) =>
    new UsearchIndex(new AnnIndex(s.description, dim, s.efConstruction, s.efSearch, s.threads, s.addThreads)),
  async open(dir: string, rec: IndexRecord, s: IndexSettings, _ctx, o = {}): Promise<SearchIndex> {
    // databases built before the checksum was recorded load unchecked
    const check =
      rec.bytes !== undefined && rec.crc32 !== undefined ? { bytes: rec.bytes, crc32: rec.crc32 } : undefined;
    return new UsearchIndex(
      AnnIndex.load(
        path.join(dir, USEARCH_FILE),
        rec.description,
        rec.dim,
        rec.size,
        s.efSearch,
        s.threads,
        o.mmap ?? true,
        check,
      ),
    );
  },
};
