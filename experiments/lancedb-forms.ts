/**
 * Why the LanceDB backend trains under L2 and reads row ids (src/search/lancedb.ts): the same vectors in two
 * LanceDB tables with stable row ids (numbered 0, 1, 2, … as added: the chunk ids), the index trained under dot or
 * under L2, searched the four ways a query can read them: PQ distances alone or re-ranking 10·k candidates by their
 * full vectors, the chunk id read from the `id` column or taken as the `_rowid`.
 *
 *   npm run bench:scale -- --chunks 200000 --pq 64 --backends lancedb --keep DIR --target 0   (writes the vectors)
 *   node --import tsx experiments/lancedb-forms.ts DIR [--lists 512] [--pq 64]
 *        → experiments/results/lancedb-forms.json (recall@10 against exact search, queries/s of a second pass)
 * A table kept from an earlier run (with its index) is searched again, not rebuilt.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import * as lancedb from "@lancedb/lancedb";
import * as arrow from "apache-arrow";

const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  options: { lists: { type: "string", default: "512" }, pq: { type: "string", default: "64" } },
});
const dir = positionals[0];
if (!dir || !fs.existsSync(path.join(dir, "base.f32")))
  throw new Error("usage: lancedb-forms.ts DIR (a folder kept by npm run bench:scale -- --keep DIR)");
const D = 64,
  K = 10,
  GROUP = 32,
  LANES = 2;
const read = (f: string) => {
  const b = fs.readFileSync(path.join(dir, f));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
};
const base = new Float32Array(read("base.f32")),
  qs = new Float32Array(read("queries.f32")),
  gt = new Int32Array(read("gt.i32"));
const N = base.length / D,
  Q = qs.length / D;

type Metric = "dot" | "l2";
async function build(metric: Metric): Promise<lancedb.Table> {
  const conn = await lancedb.connect(path.join(dir, `forms-${metric}`));
  const schema = new arrow.Schema([
    new arrow.Field("id", new arrow.Int32(), false),
    new arrow.Field("vector", new arrow.FixedSizeList(D, new arrow.Field("item", new arrow.Float32(), true)), false),
  ]);
  if ((await conn.tableNames()).includes("chunks")) {
    const t = await conn.openTable("chunks");
    if ((await t.listIndices()).length) return t;
    await conn.dropTable("chunks");
  }
  let t: lancedb.Table | null = null;
  for (let s = 0; s < N; s += 65536) {
    const e = Math.min(N, s + 65536);
    const rows = Array.from({ length: e - s }, (_, i) => ({
      id: s + i,
      vector: Array.from(base.subarray((s + i) * D, (s + i + 1) * D)),
    }));
    if (t) await t.add(rows);
    else
      t = await conn.createTable("chunks", rows, {
        mode: "create",
        schema,
        storageOptions: { new_table_enable_stable_row_ids: "true" },
      });
  }
  const t0 = performance.now();
  await t!.createIndex("vector", {
    config: lancedb.Index.ivfPq({
      numPartitions: Number(o.lists),
      numSubVectors: Number(o.pq),
      distanceType: metric,
    }),
  });
  console.error(`${metric}: trained in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return t!;
}

async function measure(t: lancedb.Table, metric: Metric, nprobes: number, refine: number, rowid: boolean) {
  const got: number[][] = Array.from({ length: Q }, () => []);
  const group = async (g0: number) => {
    const g1 = Math.min(Q, g0 + GROUP);
    let q = t
      .vectorSearch(qs.subarray(g0 * D, (g0 + 1) * D))
      .distanceType(metric)
      .limit(K)
      .nprobes(nprobes)
      .select(rowid ? ["_distance"] : ["id", "_distance"]);
    if (rowid) q = q.withRowId();
    if (refine) q = q.refineFactor(refine);
    for (let i = g0 + 1; i < g1; i++) q = q.addQueryVector(qs.subarray(i * D, (i + 1) * D));
    const r = await q.toArrow();
    const qi = r.getChild("query_index"),
      id = r.getChild(rowid ? "_rowid" : "id")!;
    for (let j = 0; j < r.numRows; j++) got[g0 + (qi ? Number(qi.get(j)) : 0)].push(Number(id.get(j)));
  };
  const starts = Array.from({ length: Math.ceil(Q / GROUP) }, (_, i) => i * GROUP);
  const pass = async () => {
    for (const g of got) g.length = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: LANES }, async (_, l) => {
        for (let s = l; s < starts.length; s += LANES) await group(starts[s]);
      }),
    );
    return Q / ((performance.now() - t0) / 1000);
  };
  await pass(); // loads what the queries touch
  const qps = await pass();
  let hit = 0;
  for (let i = 0; i < Q; i++) {
    const want = new Set(gt.subarray(i * K, (i + 1) * K));
    hit += got[i].filter((x) => want.has(x)).length;
  }
  return { recall: hit / (Q * K), qps };
}

const results: Record<string, unknown>[] = [];
for (const metric of ["dot", "l2"] as const) {
  const t = await build(metric);
  for (const nprobes of [2, 4, 8])
    for (const refine of [0, 10])
      for (const rowid of [false, true]) {
        const r = await measure(t, metric, nprobes, refine, rowid);
        const row = { metric, ids: rowid ? "_rowid" : "id column", nprobes, refine, ...r };
        results.push(row);
        console.log(
          `${metric.padEnd(3)} ${row.ids.padEnd(9)} nprobes ${nprobes} refine ${String(refine).padEnd(2)}  ` +
            `recall@10 ${r.recall.toFixed(3)}  ${r.qps.toFixed(0)} queries/s`,
        );
      }
  t.close();
}
fs.mkdirSync("experiments/results", { recursive: true });
fs.writeFileSync(
  "experiments/results/lancedb-forms.json",
  `${JSON.stringify({ vectors: N, queries: Q, lists: Number(o.lists), pq: Number(o.pq), results }, null, 1)}\n`,
);
