/** Atomic file writes (temp file + fsync + rename), checksums and checked reads. */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { RetroError } from "./errors.ts";

let tmpCounter = 0;
/** A temp path beside `target`, unique per process and call; never matched by readers (".tmp" suffix). */
export function tmpPathFor(target: string): string {
  return `${target}.${process.pid}.${tmpCounter++}.tmp`;
}

/** Write `data` to `target` atomically: a reader sees either the old file or the complete new one. */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const tmp = tmpPathFor(target);
  const fd = fs.openSync(tmp, "w");
  try {
    fs.writeSync(fd, typeof data === "string" ? Buffer.from(data, "utf8") : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, target);
}

export function writeJsonAtomic(target: string, value: unknown): void {
  writeFileAtomic(target, JSON.stringify(value, null, 2) + "\n");
}

export function readJson<T>(file: string, what: string): T {
  return parseJsonFile<T>(file, what, (m) => new RetroError("corrupt", `${what} is not valid JSON: ${file} (${m})`));
}

function parseJsonFile<T>(file: string, what: string, bad: (message: string) => RetroError): T {
  if (!fs.existsSync(file)) throw new RetroError("notFound", `${what} not found: ${file}`);
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as T;
  } catch (e) {
    throw bad((e as Error).message);
  }
}

/** A JSON file the user wrote (a --config): bad JSON is a usage error (exit 2), naming the file and the parse error. */
export function readUserJson<T>(file: string, what: string): T {
  const v = parseJsonFile<unknown>(
    file,
    what,
    (m) => new RetroError("usage", `${what} ${file} is not valid JSON (${m})`),
  );
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new RetroError("usage", `${what} ${file} must hold a JSON object`);
  return v as T;
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** SHA-256 of a file, read in 4 MiB pieces; `each` also sees every piece (one pass for another check). */
export function sha256File(file: string, each?: (piece: Buffer) => void): string {
  const h = createHash("sha256");
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) {
      h.update(buf.subarray(0, n));
      each?.(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest("hex");
}

/** Remove stale temp files left by a killed process (they are never read, this only frees disk). */
export function removeStaleTemps(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const f of fs.readdirSync(dir)) if (f.endsWith(".tmp")) fs.rmSync(path.join(dir, f), { force: true });
}

export function requirePath(p: string, what: string): void {
  if (!fs.existsSync(p)) throw new RetroError("notFound", `${what} not found: ${p}`);
}

export interface FileCheck {
  bytes: number;
  crc32: number;
}

/** Size and CRC-32 of a file, read in 8 MiB pieces. */
export function fileCheck(file: string): FileCheck {
  const fd = fs.openSync(file, "r");
  const buf = Buffer.alloc(8 << 20);
  let crc = 0,
    bytes = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, bytes);
      if (n <= 0) break;
      crc = zlib.crc32(buf.subarray(0, n), crc);
      bytes += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { bytes, crc32: crc };
}

/**
 * How a run records a path it depends on (its database): relative to the run folder when the two share a
 * project tree — a common folder at least two levels below the root (`/work/demo/db` beside
 * `/work/demo/retro`, not `/tmp/a` beside `/tmp/b`) — so a run moved together with its database keeps working;
 * else absolute.
 */
export function storedPath(fromDir: string, target: string): string {
  const from = path.resolve(fromDir).split(path.sep).filter(Boolean);
  const to = path.resolve(target).split(path.sep).filter(Boolean);
  let common = 0;
  while (common < from.length && common < to.length && from[common] === to[common]) common++;
  if (common < 2) return path.resolve(target);
  return path.relative(path.resolve(fromDir), path.resolve(target)) || ".";
}

/** Bytes on disk under a path (a file's size, a folder's files summed; 0 where nothing is). */
export function diskBytes(p: string): number {
  if (!fs.existsSync(p)) return 0;
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.size;
  return fs.readdirSync(p).reduce((a, f) => a + diskBytes(path.join(p, f)), 0);
}

/** The path a run recorded with storedPath, resolved against the run folder (absolute paths unchanged). */
export function resolveStored(fromDir: string, stored: string): string {
  return path.resolve(fromDir, stored);
}

/**
 * Make `dir` an output folder of one command, or refuse it: a folder that holds the command's marker file is its
 * own (re-run, resume); a missing or empty one is claimed (the marker written first); one holding only files the
 * command writes, `legacy` among them, is an output of a version before the marker and is claimed too. Anything
 * else — a user's folder that happens to hold a README.md or a manifest.json — is never written into.
 */
export function claimOutputFolder(
  dir: string,
  o: { marker: string; command: string; writes: string[]; legacy: string[]; ignore?: string[] },
): void {
  fs.mkdirSync(dir, { recursive: true });
  const marker = path.join(dir, o.marker);
  if (fs.existsSync(marker)) return;
  const entries = fs.readdirSync(dir).filter((f) => !(o.ignore ?? []).includes(f));
  const earlier = entries.length > 0 && entries.every((f) => o.writes.includes(f) || o.legacy.includes(f));
  if (entries.length && !(earlier && entries.some((f) => o.legacy.includes(f))))
    throw new RetroError(
      "usage",
      `${dir} is not empty and was not written by ${o.command} (no ${o.marker}; it holds ${entries
        .slice(0, 3)
        .join(", ")}${entries.length > 3 ? ", …" : ""}): choose a new or empty folder`,
    );
  fs.writeFileSync(marker, `an output folder of ${o.command}\n`);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Offset of the first byte that starts no valid UTF-8 sequence (for the error message; linear time). */
function firstBadUtf8Byte(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    const n = c < 0x80 ? 0 : c >= 0xc2 && c < 0xe0 ? 1 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0) return i;
    for (let k = 1; k <= n; k++) if (i + k >= b.length || (b[i + k] & 0xc0) !== 0x80) return i;
    i += n + 1;
  }
  return 0; // overlong or surrogate forms: the fatal decoder is the judge, the offset is approximate
}

export function decodeUtf8(bytes: Uint8Array, where: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new RetroError("badInput", `${where}: not valid UTF-8 (first bad byte at offset ${firstBadUtf8Byte(bytes)})`);
  }
}

/**
 * A text file's contents, strictly UTF-8: invalid bytes are an error naming the offset (and the line), never
 * replaced silently by U+FFFD. Every reader of user text (corpora, instruction and QA data, prompts) uses it.
 */
export function readTextFile(file: string, what: string): string {
  requirePath(file, what);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new RetroError("badInput", `${file}: cannot read the ${what} (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  try {
    return utf8.decode(bytes);
  } catch {
    const at = firstBadUtf8Byte(bytes);
    let line = 1;
    for (let i = 0; i < at; i++) if (bytes[i] === 10) line++;
    throw new RetroError("badInput", `${file}:${line}: not valid UTF-8 (first bad byte at offset ${at})`);
  }
}
