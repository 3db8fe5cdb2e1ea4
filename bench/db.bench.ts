/**
 * npm run bench:db — throughput of the database pipeline on the bundled corpus, and its peak
 * memory at two corpus sizes. Each stage runs in its own process (`retro db build --until STAGE`,
 * resuming the previous stages), so that every stage's peak RSS is measured on its own.
 * Sizes: "half" = sotu + moby-dick (~2.0M words), "full" = all four bundled datasets (~4.9M words).
 * Then the load-time cost of the integrity checks (token SHA-256s and id ranges, chunk-table ranges, the index's
 * size and CRC-32 before usearch reads it) against reading the same files unchecked.
 * Flags: --sizes half,full   --keep (keep the databases under runs/bench-db-*)   --load DIR (only the load
 * measurement, on an existing database)
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { defaultDatasets } from "../src/data/sources.ts";
import { table } from "./common.ts";
import { Database } from "../src/db/database.ts";
import { fileCheck } from "../src/util/fsx.ts";

const { values: a } = parseArgs({
  options: {
    sizes: { type: "string", default: "half,full" },
    keep: { type: "boolean", default: false },
    load: { type: "string" },
  },
});

/**
 * The integrity checks' cost at load: opening the database (token SHA-256s, id and chunk-range checks) and the
 * index's size + CRC-32 (computed here explicitly: a database built before the checksum existed skips it), against
 * reading the same files with no check at all. Best of 3, warm page cache.
 */
function loadCost(dir: string): Record<string, string | number> {
  const files = [
    "tokens/train.tok",
    "tokens/valid.tok",
    "tokens/train.docs",
    "tokens/valid.docs",
    "chunks.blk",
    "index/index.usearch",
  ]
    .map((f) => path.join(dir, f))
    .filter((f) => fs.existsSync(f));
  const best = (f: () => void) =>
    Math.min(
      ...[0, 1, 2, 3]
        .map(() => {
          const t0 = performance.now();
          f();
          return performance.now() - t0;
        })
        .slice(1),
    );
  const raw = best(() => {
    for (const f of files) fs.readFileSync(f);
  });
  const open = best(() => new Database(dir).close());
  const index = path.join(dir, "index", "index.usearch");
  const crc = fs.existsSync(index) ? best(() => fileCheck(index)) : 0;
  const mib = files.reduce((s, f) => s + fs.statSync(f).size, 0) / 2 ** 20;
  return {
    database: dir,
    files_MiB: mib.toFixed(1),
    raw_read_ms: raw.toFixed(0),
    open_checked_ms: open.toFixed(0),
    index_crc_ms: crc.toFixed(0),
    checks_total_ms: (open + crc).toFixed(0),
  };
}

if (a.load) {
  console.log(table([loadCost(a.load)]));
  console.log(
    "(raw_read: the token, document, chunk and index files read with no check; open_checked: new Database() with " +
      "the token SHA-256s, id and chunk-range checks; index_crc: the index's size + CRC-32, checked before usearch " +
      "maps it)",
  );
  process.exit(0);
}
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const stages = ["tokens", "chunks", "embed", "index", "query"] as const;
const rows: Record<string, string | number>[] = [],
  loads: Record<string, string | number>[] = [];
for (const size of a.sizes!.split(",")) {
  const datasets =
    size === "half" ? defaultDatasets().filter((d) => d.name === "sotu" || d.name === "moby-dick") : defaultDatasets();
  const dir = path.join(ROOT, "runs", `bench-db-${size}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const cfgFile = path.join(os.tmpdir(), `bench-db-${size}.json`);
  fs.writeFileSync(cfgFile, JSON.stringify({ datasets }));
  for (const st of stages) {
    const ru = path.join(os.tmpdir(), `bench-db-${size}-${st}.json`);
    const t0 = Date.now();
    const r = spawnSync(
      process.execPath,
      [path.join(ROOT, "bin", "retro.js"), "db", "build", "--out", dir, "--config", cfgFile, "--until", st],
      {
        env: { ...process.env, RETRO_QUIET: "1", RETRO_RUSAGE: ru },
        encoding: "utf8",
      },
    );
    if (r.status !== 0) throw new Error(`stage ${st} failed: ${r.stderr}`);
    const wall = (Date.now() - t0) / 1000;
    const man = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
    const usage = JSON.parse(fs.readFileSync(ru, "utf8"));
    const chunks = man.chunks?.count ?? 0;
    const queried = man.neighbours
      ? Object.values(man.neighbours as Record<string, { samples: number; chunksPerSample: number }>).reduce(
          (s, n) => s + n.samples * n.chunksPerSample,
          0,
        )
      : 0;
    const items =
      st === "tokens" ? man.splits.train.tokens + man.splits.valid.tokens : st === "query" ? queried : chunks;
    // the embed stage also fits the embedder (LSA: a randomized SVD over ≤ 50k chunks); its own rate excludes that
    const fit = st === "embed" ? (man.embeddings.fitSeconds as number) : 0;
    const net = st === "embed" ? (man.embeddings.embedSeconds as number) : wall;
    rows.push({
      corpus: size,
      stage: st,
      items,
      unit: st === "tokens" ? "tokens" : st === "query" ? "query chunks" : "chunks",
      wall_s: wall.toFixed(1),
      fit_s: fit.toFixed(1),
      "items/s": Math.round(items / net),
      peak_rss_MiB: Math.round(usage.maxRssMiB),
    });
    console.log(table([rows[rows.length - 1]]));
  }
  loads.push({ corpus: size, ...loadCost(dir) });
  if (!a.keep) fs.rmSync(dir, { recursive: true, force: true });
}
console.log("\n" + table(rows));
console.log(
  "(wall_s includes Node start-up and loading the earlier stages' outputs; the tokens stage includes training the BPE;",
);
console.log(" items/s of the embed stage excludes fit_s, the embedder's fitting; the others are items / wall_s)");
console.log("\n" + table(loads));
console.log(
  "(load-time cost of the integrity checks: raw_read reads the files unchecked; open_checked is new Database(); " +
    "index_crc the index's size + CRC-32)",
);
