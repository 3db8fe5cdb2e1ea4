/**
 * npm run bench:scale -- --chunks N — the index backends at scale, on synthetic clustered vectors (unit norm, the
 * shape of chunk embeddings: a few hundred topics, points scattered around them), each backend in its own process
 * (its peak RSS is its own): build time (adding and training), peak RSS, disk size, and the first search setting
 * of a sweep that reaches recall@10 ≥ 0.9 against exact search, with its queries/s. Faiss IVF-PQ is the peer,
 * measured in the same run on the same vectors and the same index description (`../shared/peers/faiss_index.py`;
 * apt-get install -y python3-faiss), run with this machine's OpenBLAS variables unset (see BLAS_ENV) and one
 * OpenBLAS thread, from the lists LanceDB probed: halving while it stays at recall ≥ 0.9, else doubling until it
 * reaches 0.9 or its recall levels off (the peer trains on every call: at most 4 calls).
 *
 * Nothing holds all the vectors: the driver writes them and computes the exact top-10 block by block, and each
 * backend's worker streams them from the file (so a worker's peak RSS is what its index needs).
 *
 * Flags: --chunks 100000  --dim 64  --queries 200  --clusters 256  --backends usearch,lancedb,pgvector,faiss
 *        --lists (IVF lists; default ≈ √N)  --pq (sub-vectors; default dim/2)  --seed 1  --keep DIR (vectors kept
 *        there and reused by a later run with the same flags)  --json (one JSON line per backend: backend, chunks,
 *        dim, build_s, peak_rss_mb, disk_mb, recall_at_10, qps, setting, …)  --target 0.8 (LanceDB's queries/s over
 *        Faiss's, each at recall ≥ 0.9: below it, or with no common recall, the bench exits 1; 0 turns it off)
 *        --peer-train (rows the Faiss peer trains on; default 256 per list, as LanceDB samples)
 * Queries/s is the second pass over the queries (the first loads what they touch; also reported: qps_first_pass).
 * pgvector runs against PGlite (single-threaded Postgres in WebAssembly, behind pglite-socket): its figures are
 * PGlite's, not a Postgres server's. Exits 1 when one of retro-ts's backends never reaches recall@10 ≥ 0.9, or
 * when LanceDB misses --target.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { PEERS, peerAvailable, runPeer, table } from "./common.ts";
import { diskBytes } from "../src/util/fsx.ts";

const { values: a } = parseArgs({
  options: {
    chunks: { type: "string", default: "100000" },
    dim: { type: "string", default: "64" },
    queries: { type: "string", default: "200" },
    clusters: { type: "string", default: "256" },
    backends: { type: "string", default: "usearch,lancedb,pgvector,faiss" },
    lists: { type: "string" },
    pq: { type: "string" },
    seed: { type: "string", default: "1" },
    worker: { type: "string" },
    dir: { type: "string" },
    keep: { type: "string" },
    target: { type: "string", default: "0.8" },
    "peer-train": { type: "string" },
    json: { type: "boolean", default: false },
  },
});
const N = Number(a.chunks),
  D = Number(a.dim),
  Q = Number(a.queries),
  K = 10;
const lists = Number(a.lists ?? 2 ** Math.round(Math.log2(Math.sqrt(N)))),
  pq = Number(a.pq ?? D / 2);

/** a seeded normal generator (Box-Muller over a xorshift) */
function normals(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** rows [i0, i1) of a seeded clustered set (row i's cluster and noise depend on i and the seed only) */
function clustered(i0: number, i1: number, seed: number, centers: Float32Array): Float32Array {
  const g = normals((seed * 1000003 + Math.floor(i0 / BLOCK)) >>> 0),
    C = centers.length / D;
  const out = new Float32Array((i1 - i0) * D);
  for (let i = i0; i < i1; i++) {
    const c = Math.floor(((i * 2654435761) >>> 0) % C),
      o = (i - i0) * D;
    let norm = 0;
    for (let j = 0; j < D; j++) {
      const v = centers[c * D + j] + 0.35 * g();
      out[o + j] = v;
      norm += v * v;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let j = 0; j < D; j++) out[o + j] *= inv;
  }
  return out;
}

/** vectors are written, read and scored in blocks of this many rows */
const BLOCK = 65536;

/** rows [s, e) of a raw float32 file of D columns */
function readRows(file: string, s: number, e: number): Float32Array {
  const out = new Float32Array((e - s) * D);
  const fd = fs.openSync(file, "r");
  try {
    fs.readSync(fd, new Uint8Array(out.buffer), 0, out.byteLength, s * D * 4);
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

const peakRss = () => process.resourceUsage().maxRSS / 1024;

if (a.worker) {
  // one backend, in this process: build, then sweep its search parameter until recall@10 ≥ 0.9
  const dir = a.dir!;
  const bytes = (f: string) => {
    const b = fs.readFileSync(path.join(dir, f));
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
  };
  const qs = new Float32Array(bytes("queries.f32"));
  const gt = new Int32Array(bytes("gt.i32"));
  const { indexBackend } = await import("../src/search/registry.ts");
  const { INDEX_SETTINGS } = await import("../src/search/settings.ts");
  const { defaultsOf } = await import("../src/util/settings.ts");
  process.env.RETRO_QUIET = "1";
  let stop = async () => {};
  let store = "";
  const desc = a.worker === "usearch" ? "HNSW32,SQfp16" : a.worker === "lancedb" ? `IVF${lists},PQ${pq}` : "HNSW16";
  if (a.worker === "pgvector") {
    const { PGlite } = await import("@electric-sql/pglite");
    const { vector } = await import("@electric-sql/pglite-pgvector");
    const { PGLiteSocketServer } = await import("@electric-sql/pglite-socket");
    const pg = await PGlite.create({ extensions: { vector } });
    const server = new PGLiteSocketServer({ db: pg, port: 0, host: "127.0.0.1", maxConnections: 4 });
    await server.start();
    store = `postgres://postgres@${server.getServerConn()}/postgres`;
    stop = async () => {
      await server.stop();
      await pg.close();
    };
  }
  const work = path.join(dir, a.worker);
  fs.mkdirSync(work, { recursive: true });
  const settings = { ...defaultsOf(INDEX_SETTINGS), description: desc, store, threads: 2, addThreads: 2 };
  const backend = indexBackend(desc, store);
  const ctx = { dir: work, chunkText: () => "" };
  // a finished build kept with --keep (same vectors, same description) is searched again, not rebuilt: its
  // record holds the build's times and peak RSS
  const built = path.join(work, "build.json");
  type Built = { desc: string; add_s: number; index_s: number; rss: number; files: Record<string, unknown> };
  let b: Built | null =
    fs.existsSync(built) && a.worker !== "pgvector" ? JSON.parse(fs.readFileSync(built, "utf8")) : null;
  if (b?.desc !== desc) b = null;
  if (!b) {
    const t0 = performance.now();
    const idx = backend.create(settings, D, { ...ctx, embedderId: "synthetic" });
    for (let s = 0; s < N; s += BLOCK) {
      const e = Math.min(N, s + BLOCK);
      await idx.add({ first: s, count: e - s, vectors: readRows(path.join(dir, "base.f32"), s, e) });
    }
    const t1 = performance.now();
    const files = await idx.save(path.join(work, "index"));
    const t2 = performance.now();
    b = { desc, add_s: (t1 - t0) / 1000, index_s: (t2 - t1) / 1000, rss: peakRss(), files: { ...files } };
    fs.writeFileSync(built, JSON.stringify(b));
  }
  const rec = {
    description: desc,
    dim: D,
    size: N,
    embedderId: "synthetic",
    buildSeconds: b.add_s + b.index_s,
    ...b.files,
  };
  // LanceDB: PQ distances alone first (refine 0, as the Faiss peer searches), while their recall still grows; then
  // re-ranking refine·k candidates by their full vectors (with PQ32 on dim 64 PQ distances stop short of 0.9; at 1M
  // chunks 10·k was not enough — recall 0.63 at nprobes 64 —, so the sweep goes on to 50·k and 100·k)
  const sweep: [number, number][] =
    a.worker === "lancedb"
      ? [1, 2, 4, 8, 16, 32, 64]
          .map((p): [number, number] => [p, 0])
          .concat([1, 2, 4, 8, 16, 32, 64].map((p): [number, number] => [p, 10]))
          .concat([
            [32, 50],
            [64, 50],
            [128, 50],
            [128, 100],
            // at 10M (4,096 lists) refine 100 stopped at recall 0.82
            [256, 100],
            [256, 300],
            [512, 300],
          ])
      : [16, 32, 64, 128, 256, 512].map((p): [number, number] => [p, 0]);
  let found: Record<string, unknown> | null = null;
  let pqOnly = -1; // the last recall with PQ distances alone; -2 once it has levelled off (the rest skipped)
  for (const [i, [p, refine]] of sweep.entries()) {
    if (a.worker === "lancedb" && refine === 0 && pqOnly === -2) continue;
    const s2 = { ...settings, efSearch: Math.max(p, K), nprobes: p, refineFactor: refine };
    const opened = await backend.open(path.join(work, "index"), rec, s2, ctx);
    // the first pass loads what the queries touch (LanceDB: the lists' codes into its index cache); the second is
    // timed, as the peer times a search of an index it holds in memory. Both rates are reported.
    let q0 = performance.now();
    await opened.search({ texts: [], vectors: qs }, K);
    const qpsCold = Q / ((performance.now() - q0) / 1000);
    q0 = performance.now();
    const res = await opened.search({ texts: [], vectors: qs }, K);
    const qps = Q / ((performance.now() - q0) / 1000);
    let hit = 0;
    for (let q = 0; q < Q; q++) {
      const want = new Set(gt.subarray(q * K, (q + 1) * K));
      for (let t = 0; t < K; t++) if (want.has(res.ids[q * K + t])) hit++;
    }
    const recall = hit / (Q * K);
    if (a.worker === "lancedb" && refine === 0) pqOnly = recall < pqOnly + 0.01 ? -2 : recall;
    if (recall >= 0.9 || i === sweep.length - 1) {
      found = {
        param:
          a.worker === "lancedb"
            ? `nprobes ${p}, ${refine ? `refine ${refine}` : "no re-ranking"}`
            : `efSearch ${Math.max(p, K)}`,
        nprobes: a.worker === "lancedb" ? p : undefined,
        recall,
        qps,
        qps_first_pass: qpsCold,
      };
      if (recall >= 0.9) break;
    }
  }
  await stop();
  console.log(
    JSON.stringify({
      backend: a.worker,
      description: desc,
      add_s: b.add_s,
      index_s: b.index_s,
      peak_rss_mib: Math.max(b.rss, peakRss()),
      disk_mib: a.worker === "pgvector" ? undefined : diskBytes(work) / 2 ** 20, // PGlite keeps its tables in memory
      ...found,
    }),
  );
  process.exit(0);
}

// the driver: vectors, exact neighbours, one worker per backend, the peer
const flagsKey = JSON.stringify({ N, D, Q, clusters: a.clusters, seed: a.seed });
const dir = a.keep ? path.resolve(a.keep) : fs.mkdtempSync(path.join(os.tmpdir(), "retro-scale-"));
fs.mkdirSync(dir, { recursive: true });
const t0 = performance.now();
if (
  !fs.existsSync(path.join(dir, "vectors.json")) ||
  fs.readFileSync(path.join(dir, "vectors.json"), "utf8") !== flagsKey
) {
  const g = normals(Number(a.seed));
  const centers = new Float32Array(Number(a.clusters) * D).map(() => g());
  const qs = clustered(0, Q, Number(a.seed) + 2, centers);
  // exact top-10 by inner product (the ground truth every backend is scored against), block by block
  const best = Array.from({ length: Q }, () => [] as [number, number][]);
  const fd = fs.openSync(path.join(dir, "base.f32"), "w");
  for (let s0 = 0; s0 < N; s0 += BLOCK) {
    const e0 = Math.min(N, s0 + BLOCK);
    const rows = clustered(s0, e0, Number(a.seed) + 1, centers);
    fs.writeSync(fd, new Uint8Array(rows.buffer));
    for (let q = 0; q < Q; q++) {
      const b = best[q];
      for (let i = s0; i < e0; i++) {
        let v = 0;
        for (let j = 0, o = (i - s0) * D; j < D; j++) v += qs[q * D + j] * rows[o + j];
        if (b.length < K || v > b[K - 1][1]) {
          b.push([i, v]);
          b.sort((x, y) => y[1] - x[1]);
          if (b.length > K) b.pop();
        }
      }
    }
    if (!a.json && e0 % (BLOCK * 16) === 0) console.log(`  vectors and exact top-10: ${e0} of ${N}`);
  }
  fs.closeSync(fd);
  const gt = new Int32Array(Q * K);
  best.forEach((b, q) => b.forEach(([i], t) => (gt[q * K + t] = i)));
  fs.writeFileSync(path.join(dir, "queries.f32"), Buffer.from(qs.buffer));
  fs.writeFileSync(path.join(dir, "gt.i32"), Buffer.from(gt.buffer));
  fs.writeFileSync(path.join(dir, "vectors.json"), flagsKey);
}
const say = (x: string) => (a.json ? process.stderr.write(`${x}\n`) : console.log(x));
say(
  `${N} vectors of ${D} dims in ${Number(a.clusters)} clusters, ${Q} queries, exact top-10 in ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

const rows: Record<string, string | number>[] = [];
/** each backend's (and the peer's) recall and queries/s at the setting it stopped at */
const reached = new Map<string, { recall: number; qps: number }>();
let failed = 0;
let lanceProbes = 0;
const row = (r: Record<string, unknown>) => {
  const peer = String(r.backend).includes("peer");
  const build = Number(r.add_s ?? 0) + Number(r.index_s ?? r.train_s ?? 0);
  const recall = Number(r.recall ?? r.recall_at_k ?? 0),
    qps = Number(r.qps ?? r.batch_qps ?? 0);
  if (a.json)
    console.log(
      JSON.stringify({
        backend: peer ? "faiss" : r.backend,
        peer,
        chunks: N,
        dim: D,
        index: r.description ?? r.factory,
        build_s: build,
        add_s: Number(r.add_s ?? 0),
        train_s: Number(r.index_s ?? r.train_s ?? 0),
        peak_rss_mb: Number(r.peak_rss_mib ?? r.peak_rss_mb ?? 0),
        disk_mb: r.disk_mib === undefined ? null : Number(r.disk_mib),
        recall_at_10: recall,
        qps,
        setting: r.param ?? null,
        qps_first_pass: r.qps_first_pass ?? null,
      }),
    );
  rows.push({
    backend: String(r.backend),
    index: String(r.description ?? r.factory ?? ""),
    "add s": Number(r.add_s ?? 0).toFixed(1),
    "train/index s": Number(r.index_s ?? r.train_s ?? 0).toFixed(1),
    "peak RSS MiB": Number(r.peak_rss_mib ?? r.peak_rss_mb ?? 0).toFixed(0),
    "disk MiB": r.disk_mib === undefined ? "–" : Number(r.disk_mib).toFixed(1),
    "search at recall ≥ 0.9": String(r.param ?? ""),
    "recall@10": recall.toFixed(3),
    "queries/s": qps.toFixed(0),
  });
  // the peer's shortfall is reported, not failed: only retro-ts's backends must reach 0.9
  if (!peer && recall < 0.9) failed++;
  reached.set(peer ? "faiss" : String(r.backend), { recall, qps });
  if (!a.json) console.log(table([rows[rows.length - 1]]));
};
for (const b of a.backends!.split(",")) {
  if (b === "faiss") {
    if (!peerAvailable("faiss", "faiss_index.py")) continue;
    // the same description as LanceDB's, PQ distances (no re-ranking), from the lists LanceDB probed (a sixteenth
    // of the lists when LanceDB did not run): halving while recall@10 stays ≥ 0.9 (the peer's lowest setting that
    // reaches it, as LanceDB's sweep found its own), else doubling until it reaches 0.9 or levels off
    let nprobe = lanceProbes || Math.max(1, Math.floor(lists / 16)),
      lastRecall = -1,
      step = 0; // −1 halving, +1 doubling
    let best: { r: Record<string, unknown>; nprobe: number } | null = null;
    for (let call = 0; call < 4; call++) {
      const r = runPeer<Record<string, unknown>>(
        "faiss_index.py",
        [
          path.join(dir, "base.f32"),
          path.join(dir, "queries.f32"),
          String(D),
          JSON.stringify({
            factory: `IVF${lists},PQ${pq}`,
            metric: "ip",
            nprobe,
            k: K,
            threads: 2,
            // LanceDB trains its lists on 256 rows per list (its sampleRate); the peer on as many (it was 50,000,
            // 12 rows per list at 10M, and its recall levelled off below 0.9), or --peer-train rows (its k-means
            // took 330 s on 262,144 rows at 1,024 lists: at 10M, 4,096 lists, 256 per list would take ~1.5 h a call)
            ntrain: Math.min(N, Number(a["peer-train"] ?? 256 * lists)),
            gt: path.join(dir, "gt.i32"),
          }),
        ],
        // OpenBLAS's own threads inside Faiss's OpenMP ones oversubscribe 2 cores: batch search 10.9k → 18.4k
        // queries/s at 100k with OPENBLAS_NUM_THREADS=1 (measured), so the peer runs that way
        { unsetBlasEnv: true, env: { OPENBLAS_NUM_THREADS: "1" } },
      );
      const recall = Number(r.recall_at_k);
      say(
        `  faiss (peer) at nprobe ${nprobe}: recall@10 ${recall.toFixed(3)}, ${Number(r.batch_qps ?? 0).toFixed(0)} q/s`,
      );
      if (recall >= 0.9) {
        best = { r, nprobe };
        if (step > 0 || nprobe === 1) break;
        step = -1;
        nprobe = Math.floor(nprobe / 2);
        continue;
      }
      if (step < 0) break; // the setting above was the lowest reaching 0.9
      // PQ distances alone may level off below 0.9: stop when doubling gains under 0.01
      const levelled = nprobe >= lists || recall < lastRecall + 0.01;
      if (!best || recall > Number(best.r.recall_at_k)) best = { r, nprobe };
      lastRecall = recall;
      if (levelled) break;
      step = 1;
      nprobe = Math.min(lists, nprobe * 2);
    }
    if (best) {
      const short = Number(best.r.recall_at_k) < 0.9;
      row({
        ...best.r,
        backend: "faiss (peer)",
        description: `IVF${lists},PQ${pq}`,
        param: `nprobe ${best.nprobe}, no re-ranking${short ? " (recall levels off)" : ""}`,
        index_s: best.r.train_s,
      });
    }
    continue;
  }
  const w = spawnSync(
    process.execPath,
    ["--import", "tsx", new URL(import.meta.url).pathname, ...process.argv.slice(2), "--worker", b, "--dir", dir],
    {
      encoding: "utf8",
      maxBuffer: 1 << 24,
    },
  );
  const last = w.stdout.trim().split("\n").pop() ?? "";
  if (w.status !== 0 || !last.startsWith("{")) {
    console.error(`bench:scale: ${b} failed: ${w.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    failed++;
    continue;
  }
  const r = JSON.parse(last) as Record<string, unknown>;
  if (b === "lancedb" && typeof r.nprobes === "number") lanceProbes = r.nprobes;
  row(r);
}
say(`\n${table(rows)}\n(${N} chunks, dim ${D}; peers: ${PEERS})`);
// the issue's comparison: LanceDB's queries/s over Faiss IVF-PQ's, each at the first setting reaching recall ≥ 0.9
const lance = reached.get("lancedb"),
  faiss = reached.get("faiss"),
  target = Number(a.target);
if (lance && faiss) {
  if (lance.recall >= 0.9 && faiss.recall >= 0.9) {
    const ratio = lance.qps / faiss.qps;
    say(`LanceDB / Faiss IVF-PQ queries/s at recall@10 ≥ 0.9: ${ratio.toFixed(3)}× (target ${target}×)`);
    if (ratio < target) failed++;
  } else {
    say(
      `LanceDB / Faiss IVF-PQ: no common recall ≥ 0.9 (LanceDB ${lance.recall.toFixed(3)}, Faiss ${faiss.recall.toFixed(3)})`,
    );
    if (target > 0) failed++;
  }
}
if (!a.keep) fs.rmSync(dir, { recursive: true, force: true });
if (failed) process.exit(1);
