/**
 * npm run bench:index — the ANN index against Faiss on the same vectors, in the same run.
 *
 * Vectors: real chunk embeddings of a built database (default runs/default-db; build it with
 * `npm run demo` or `retro db build`), or random unit vectors with --random N. Queries: held-out
 * vectors (not in the base). For each description and efSearch: build time, index size, batch
 * queries/s (2 threads), recall@10 against exact search; then Faiss (../shared/peers/faiss_index.py)
 * with the same description string and efSearch, and the QPS ratio at equal settings and at the
 * best setting reaching recall@10 ≥ 0.9.
 * Flags: --db DIR, --random N, --dim D, --queries Q, --descriptions "HNSW32;HNSW32,SQfp16", --ef "16,32,64,128"
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { AnnIndex } from "../src/search/usearch.ts";
import { readBlock } from "../src/util/blockfile.ts";
import { l2normalizeRows } from "../src/embed/embedder.ts";
import { Rng } from "../src/util/rng.ts";
import { peerAvailable, runPeer, table, time } from "./common.ts";

const { values: a } = parseArgs({
  options: {
    db: { type: "string", default: "runs/default-db" },
    random: { type: "string" },
    dim: { type: "string", default: "128" },
    queries: { type: "string", default: "2000" },
    descriptions: { type: "string", default: "HNSW32;HNSW32,SQfp16;HNSW32,SQ8" },
    ef: { type: "string", default: "16,32,64,128" },
    "ef-construction": { type: "string", default: "40" },
    threads: { type: "string", default: "2" },
  },
});
const threads = Number(a.threads);
const nq = Number(a.queries);
const efs = a.ef!.split(",").map(Number);
const efc = Number(a["ef-construction"]);

function loadVectors(): { base: Float32Array; queries: Float32Array; dim: number; source: string } {
  if (a.random) {
    const n = Number(a.random),
      dim = Number(a.dim),
      rng = new Rng(1);
    const all = new Float32Array((n + nq) * dim).map(() => rng.normal());
    l2normalizeRows(all, dim);
    return { base: all.slice(0, n * dim), queries: all.slice(n * dim), dim, source: `random ${n} × ${dim}` };
  }
  const edir = path.join(a.db!, "embed");
  if (!fs.existsSync(edir))
    throw new Error(`${edir} not found: build the default database first (npm run demo) or pass --random N`);
  const blocks = fs
    .readdirSync(edir)
    .filter((f) => /^\d+-\d+\.blk$/.test(f))
    .sort()
    .map((f) => readBlock(path.join(edir, f), Float32Array));
  const dim = blocks[0].cols,
    n = blocks.reduce((s, b) => s + b.rows, 0);
  const all = new Float32Array(n * dim);
  let o = 0;
  for (const b of blocks) all.set(b.data, o), (o += b.data.length);
  // held-out queries: a seeded random subset of the chunks, removed from the base
  const pick = new Set(new Rng(2).sample(n, nq));
  const base = new Float32Array((n - pick.size) * dim),
    queries = new Float32Array(pick.size * dim);
  let bi = 0,
    qi = 0;
  for (let i = 0; i < n; i++) {
    const row = all.subarray(i * dim, (i + 1) * dim);
    if (pick.has(i)) queries.set(row, dim * qi++);
    else base.set(row, dim * bi++);
  }
  return {
    base,
    queries,
    dim,
    source: `${n - pick.size} chunk embeddings of ${a.db} (dim ${dim}), ${pick.size} held-out chunk queries`,
  };
}

/** QPS at a target recall, interpolating log(QPS) linearly between the two measured points around it. */
function qpsAtRecall(pts: [number, number][], target: number): number | null {
  const p = [...pts].sort((x, y) => x[0] - y[0]);
  for (let i = 0; i + 1 < p.length; i++) {
    const [r0, q0] = p[i],
      [r1, q1] = p[i + 1];
    if (r0 <= target && target <= r1 && r1 > r0)
      return Math.exp(Math.log(q0) + ((target - r0) / (r1 - r0)) * (Math.log(q1) - Math.log(q0)));
  }
  const exact = p.find(([r]) => r === target);
  return exact ? exact[1] : null;
}

const { base, queries, dim, source } = loadVectors();
const n = base.length / dim,
  k = 10;
console.log(`bench:index — ${source}; k=${k}; ${threads} threads; efConstruction ${efc}; ${os.cpus()[0].model}`);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bench-index-"));
fs.writeFileSync(path.join(tmp, "base.f32"), Buffer.from(base.buffer));
fs.writeFileSync(path.join(tmp, "q.f32"), Buffer.from(queries.buffer));

const flat = new AnnIndex("Flat", dim, 0, 0, threads);
flat.add(base, 0);
const [gt, gtS] = time(() => flat.search(queries, k));
fs.writeFileSync(path.join(tmp, "gt.i32"), Buffer.from(gt.ids.buffer));
console.log(`exact search (Flat, usearch brute force): ${(nq / gtS).toFixed(0)} queries/s`);

function recall(ids: Int32Array): number {
  let hit = 0;
  for (let i = 0; i < nq; i++) {
    const g = new Set(gt.ids.subarray(i * k, (i + 1) * k));
    for (let j = 0; j < k; j++) if (g.has(ids[i * k + j])) hit++;
  }
  return hit / (nq * k);
}

interface Row {
  description: string;
  efSearch: number;
  ours_build_s: number;
  ours_qps: number;
  ours_recall: number;
  faiss_build_s: number | string;
  faiss_qps: number | string;
  faiss_recall: number | string;
  qps_ratio: string;
}
const rows: Row[] = [];
const haveFaiss = peerAvailable("faiss", "faiss_index.py");
const summary: string[] = [];
for (const desc of a.descriptions!.split(";")) {
  const idx = new AnnIndex(desc, dim, efc, efs[0], threads, threads);
  const [, buildS] = time(() => idx.add(base, 0));
  const file = path.join(tmp, "idx.usearch");
  idx.save(file);
  const bytes = fs.statSync(file).size;
  let bestOurs = 0,
    bestFaiss = 0;
  const oursPts: [number, number][] = [],
    faissPts: [number, number][] = [];
  for (const ef of efs) {
    const loaded = AnnIndex.load(file, desc, dim, n, ef, threads, false);
    loaded.search(queries.subarray(0, 100 * dim), k); // warm up
    const [res, s] = time(() => loaded.search(queries, k));
    const r: Row = {
      description: desc,
      efSearch: ef,
      ours_build_s: +buildS.toFixed(2),
      ours_qps: Math.round(nq / s),
      ours_recall: +recall(res.ids).toFixed(4),
      faiss_build_s: "-",
      faiss_qps: "-",
      faiss_recall: "-",
      qps_ratio: "-",
    };
    if (r.ours_recall >= 0.9) bestOurs = Math.max(bestOurs, r.ours_qps);
    oursPts.push([r.ours_recall, r.ours_qps]);
    if (haveFaiss) {
      const f = runPeer<{
        train_s: number;
        add_s: number;
        batch_qps: number;
        recall_at_k: number;
        peak_rss_mb: number;
      }>("faiss_index.py", [
        path.join(tmp, "base.f32"),
        path.join(tmp, "q.f32"),
        String(dim),
        JSON.stringify({
          factory: desc,
          metric: "ip",
          efSearch: ef,
          k,
          threads,
          gt: path.join(tmp, "gt.i32"),
          ntrain: 100000,
        }),
      ]);
      r.faiss_build_s = +(f.train_s + f.add_s).toFixed(2);
      r.faiss_qps = Math.round(f.batch_qps);
      r.faiss_recall = f.recall_at_k;
      r.qps_ratio = (r.ours_qps / f.batch_qps).toFixed(2);
      if (f.recall_at_k >= 0.9) bestFaiss = Math.max(bestFaiss, f.batch_qps);
      faissPts.push([f.recall_at_k, f.batch_qps]);
    }
    rows.push(r);
    console.log(
      table([r as unknown as Record<string, string | number>])
        .split("\n")
        .slice(rows.length === 1 ? 0 : 2)
        .join("\n"),
    );
  }
  const io = qpsAtRecall(oursPts, 0.9),
    jf = qpsAtRecall(faissPts, 0.9);
  summary.push(
    `${desc.padEnd(16)} index ${(bytes / 2 ** 20).toFixed(1)} MiB | best QPS with recall@10 ≥ 0.9: ours ${bestOurs || "n/a"}, Faiss ${bestFaiss ? Math.round(bestFaiss) : "n/a"}${bestOurs && bestFaiss ? ` (${(bestOurs / bestFaiss).toFixed(2)}×)` : ""}` +
      ` | QPS at recall@10 = 0.90 (interpolated): ours ${io ? Math.round(io) : "n/a"}, Faiss ` +
      `${jf ? Math.round(jf) : "n/a"}${io && jf ? ` → ratio ${(io / jf).toFixed(2)}×` : ""}`,
  );
}
console.log("\n" + table(rows as unknown as Record<string, string | number>[]));
console.log("\n" + summary.join("\n"));
console.log(`peak RSS of this process: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
fs.rmSync(tmp, { recursive: true, force: true });
