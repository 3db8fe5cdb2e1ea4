/** Helpers shared by the benchmarks: peer discovery and invocation, timing, table printing. */
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";

export const PEERS = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..", "shared", "peers");
export const PY = "/usr/bin/python3";

/** Is a Python peer module importable? (prints why not, never throws) */
export function peerAvailable(module: string, script: string): boolean {
  if (!fs.existsSync(path.join(PEERS, script))) {
    console.log(`peer skipped: ${path.join(PEERS, script)} not found`);
    return false;
  }
  const r = spawnSync(PY, ["-c", `import ${module}`], { encoding: "utf8" });
  if (r.status !== 0) {
    console.log(`peer skipped: ${module} is not installed for ${PY} (apt-get install -y python3-${module})`);
    return false;
  }
  return true;
}

/**
 * This machine's environment sets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which slow an OpenBLAS-backed PyTorch:
 * a peer run with `unsetBlasEnv` has both removed (the benchmarks print both figures and compare against the better).
 */
export const BLAS_ENV = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"] as const;

export function runPeer<T>(
  script: string,
  args: string[],
  opts: { unsetBlasEnv?: boolean; env?: Record<string, string> } = {},
): T {
  const env = { ...process.env, ...opts.env };
  if (opts.unsetBlasEnv) for (const k of BLAS_ENV) delete env[k];
  const r = spawnSync(PY, [path.join(PEERS, script), ...args], { encoding: "utf8", maxBuffer: 1 << 26, env });
  if (r.status !== 0) throw new Error(`peer ${script} failed: ${r.stderr}`);
  const last = r.stdout.trim().split("\n").pop()!;
  return JSON.parse(last) as T;
}

/**
 * A peer run both ways — with this machine's OpenBLAS variables and with both unset — and the faster of the two by
 * `speed` (every ratio is taken against it, so no ratio is flattered by a handicapped peer).
 */
export function runPeerBothEnvs<T>(
  script: string,
  args: string[],
  speed: (r: T) => number,
): { set: T; unset: T; best: T } {
  const set = runPeer<T>(script, args),
    unset = runPeer<T>(script, args, { unsetBlasEnv: true });
  return { set, unset, best: speed(unset) > speed(set) ? unset : set };
}

export function time<T>(f: () => T): [T, number] {
  const t0 = process.hrtime.bigint();
  const v = f();
  return [v, Number(process.hrtime.bigint() - t0) / 1e9];
}

export function table(rows: Record<string, string | number>[]): string {
  if (!rows.length) return "";
  const cols = Object.keys(rows[0]);
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padStart(w[i])).join("  ");
  return [line(cols), line(w.map((n) => "-".repeat(n))), ...rows.map((r) => line(cols.map((c) => String(r[c]))))].join(
    "\n",
  );
}
