/**
 * Block files: one typed 2-D array per file with a 32-byte header (magic, dtype, rows, cols,
 * CRC-32 of the payload). Every resumable stage writes its output as blocks named
 * `<start>-<end>.blk`, atomically; a block that is missing, truncated or fails its CRC is
 * recomputed on the next run and never read as valid.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { RetroError } from "./errors.ts";
import { writeFileAtomic } from "./fsx.ts";

const MAGIC = "RTBLK001";
const HEADER = 32;
export type BlockArray = Float32Array | Int32Array | Uint32Array | Uint16Array;
const DTYPES = [Float32Array, Int32Array, Uint32Array, Uint16Array] as const;

function dtypeCode(a: BlockArray): number {
  const i = DTYPES.findIndex((C) => a instanceof C);
  if (i < 0) throw new Error("unsupported block dtype");
  return i + 1;
}

export function encodeBlock(data: BlockArray, rows: number, cols: number): Buffer {
  if (data.length !== rows * cols) throw new Error(`block: ${data.length} values for ${rows}x${cols}`);
  const payload = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const h = Buffer.alloc(HEADER);
  h.write(MAGIC, 0, "latin1");
  h.writeUInt32LE(dtypeCode(data), 8);
  h.writeUInt32LE(rows, 12);
  h.writeUInt32LE(cols, 16);
  h.writeUInt32LE(zlib.crc32(payload), 20);
  return Buffer.concat([h, payload]);
}

export function writeBlock(file: string, data: BlockArray, rows: number, cols: number): void {
  writeFileAtomic(file, encodeBlock(data, rows, cols));
}

export interface Block<T extends BlockArray> {
  data: T;
  rows: number;
  cols: number;
}

/** Read and verify a block; throws RetroError("corrupt") naming the file and the fault. */
export function readBlock<T extends BlockArray>(
  file: string,
  ctor: { new (b: ArrayBuffer): T; BYTES_PER_ELEMENT: number },
): Block<T> {
  if (!fs.existsSync(file)) throw new RetroError("notFound", `block file not found: ${file}`);
  const buf = fs.readFileSync(file);
  if (buf.length < HEADER || buf.toString("latin1", 0, 8) !== MAGIC)
    throw new RetroError("corrupt", `${file}: not a retro-ts block file (bad header)`);
  const code = buf.readUInt32LE(8),
    rows = buf.readUInt32LE(12),
    cols = buf.readUInt32LE(16),
    crc = buf.readUInt32LE(20);
  if (DTYPES[code - 1] !== (ctor as unknown))
    throw new RetroError("corrupt", `${file}: block holds dtype #${code}, expected ${ctor.name}`);
  const expect = HEADER + rows * cols * ctor.BYTES_PER_ELEMENT;
  if (buf.length !== expect)
    throw new RetroError("corrupt", `${file}: truncated or padded block (${buf.length} bytes, expected ${expect})`);
  const payload = buf.subarray(HEADER);
  if (zlib.crc32(payload) !== crc) throw new RetroError("corrupt", `${file}: checksum mismatch (corrupt block)`);
  const ab = payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.byteLength) as ArrayBuffer;
  return { data: new ctor(ab), rows, cols };
}

/** True when the block exists and passes its checks (used to decide what to recompute). */
export function blockIsValid(
  file: string,
  ctor: { new (b: ArrayBuffer): BlockArray; BYTES_PER_ELEMENT: number },
): boolean {
  try {
    readBlock(file, ctor);
    return true;
  } catch {
    return false;
  }
}

export function blockName(dir: string, start: number, end: number): string {
  return path.join(dir, `${String(start).padStart(9, "0")}-${String(end).padStart(9, "0")}.blk`);
}

/** The [start, end) ranges that cover [0, n) in steps of `size`. */
export function blockRanges(n: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let s = 0; s < n; s += size) out.push([s, Math.min(n, s + size)]);
  return out;
}
