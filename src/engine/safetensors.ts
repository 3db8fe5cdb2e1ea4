/**
 * safetensors (Hugging Face's tensor file format): u64 little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets}, __metadata__: {string: string}}, then the raw little-endian data.
 * Written by hand: the npm registry has no maintained safetensors reader/writer for Node (only Python and
 * Rust ones), and the format is this small. Reading validates everything a truncated or foreign file breaks.
 */
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { RetroError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/fsx.ts";

export type DType =
  | "F32"
  | "I32"
  | "I64"
  | "F16"
  | "BF16"
  | "U8"
  | "I8"
  | "F64"
  | "I16"
  | "U16"
  | "U32"
  | "U64"
  | "BOOL";
const BYTES: Record<DType, number> = {
  F32: 4,
  I32: 4,
  I64: 8,
  F16: 2,
  BF16: 2,
  U8: 1,
  I8: 1,
  F64: 8,
  I16: 2,
  U16: 2,
  U32: 4,
  U64: 8,
  BOOL: 1,
};

export interface TensorInfo {
  dtype: DType;
  shape: number[];
  /** byte range in the data section */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
  /** the data section (all tensors) */
  data: Buffer;
}

export type TensorData = Float32Array | Int32Array | BigInt64Array;

const MAX_HEADER = 100 * 1024 * 1024;
/** metadata key holding the CRC-32 of the data section (files written here; others are read unchecked) */
const CRC_KEY = "retro_ts_crc32";

/**
 * The header of a safetensors file of `size` bytes, `read(pos, len)` giving its bytes: length checked, JSON
 * parsed, an object. `bad` throws the file's "not a valid safetensors file" error.
 */
function parseHeader(
  size: number,
  read: (pos: number, len: number) => Buffer,
  bad: (m: string) => never,
): { hlen: number; header: Record<string, unknown> } {
  if (size < 8) bad(`${size} bytes, shorter than the 8-byte header length`);
  const hlen = Number(read(0, 8).readBigUInt64LE(0));
  if (hlen <= 1 || hlen > MAX_HEADER || 8 + hlen > size) bad(`header length ${hlen} does not fit a ${size}-byte file`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(read(8, hlen).toString("utf8")) as Record<string, unknown>;
  } catch (err) {
    return bad(`header is not JSON: ${(err as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) bad("header is not a JSON object");
  return { hlen, header };
}

function checkMetadata(md: unknown, bad: (m: string) => never): Record<string, string> {
  if (typeof md !== "object" || md === null || Object.values(md).some((v) => typeof v !== "string"))
    bad("__metadata__ must map strings to strings");
  return md as Record<string, string>;
}

/** The `__metadata__` of a safetensors file, reading its header only (the data is checked when it is read). */
export function readSafetensorsMetadata(file: string): Record<string, string> {
  if (!fs.existsSync(file)) throw new RetroError("notFound", `${file}: no such file`);
  const bad = (m: string): never => {
    throw new RetroError("corrupt", `${file}: not a valid safetensors file (${m})`);
  };
  const fd = fs.openSync(file, "r");
  try {
    const read = (pos: number, len: number) => {
      const b = Buffer.alloc(len);
      if (fs.readSync(fd, b, 0, len, pos) !== len) bad("short read of the header");
      return b;
    };
    const { header } = parseHeader(fs.fstatSync(fd).size, read, bad);
    const out = { ...checkMetadata(header.__metadata__ ?? {}, bad) };
    delete out[CRC_KEY]; // as readSafetensors returns it
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

export function readSafetensors(file: string): SafetensorsFile {
  if (!fs.existsSync(file)) throw new RetroError("notFound", `${file}: no such file`);
  const buf = fs.readFileSync(file);
  const bad = (m: string): never => {
    throw new RetroError("corrupt", `${file}: not a valid safetensors file (${m})`);
  };
  const { hlen, header } = parseHeader(buf.length, (pos, len) => buf.subarray(pos, pos + len), bad);
  const data = buf.subarray(8 + hlen);
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = v as Record<string, string>;
      continue;
    }
    const t = v as { dtype?: string; shape?: unknown; data_offsets?: unknown };
    if (!t || typeof t.dtype !== "string" || !(t.dtype in BYTES))
      bad(`tensor ${name}: unknown dtype ${JSON.stringify(t?.dtype)}`);
    if (!Array.isArray(t.shape) || t.shape.some((x) => !Number.isInteger(x) || x < 0)) bad(`tensor ${name}: bad shape`);
    const off = t.data_offsets as number[];
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      !off.every((x) => Number.isInteger(x) && x >= 0) ||
      !(off[0] <= off[1])
    )
      bad(`tensor ${name}: bad data_offsets ${JSON.stringify(off)}`);
    const shape = t.shape as number[];
    const want = shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype as DType];
    if (off[1] - off[0] !== want) bad(`tensor ${name}: ${off[1] - off[0]} bytes for shape [${shape}] of ${t.dtype}`);
    if (off[1] > data.length)
      bad(`tensor ${name} ends at byte ${off[1]} of a ${data.length}-byte data section (truncated file?)`);
    tensors.set(name, { dtype: t.dtype as DType, shape, begin: off[0], end: off[1] });
  }
  // the format's rule: the tensors tile the data section, in order, without gaps or overlaps
  let at = 0;
  for (const [name, t] of [...tensors.entries()].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end)) {
    if (t.begin !== at)
      bad(`tensor ${name} starts at byte ${t.begin}, expected ${at} (overlapping or gapped data_offsets)`);
    at = t.end;
  }
  if (at !== data.length) bad(`the tensors cover ${at} of the ${data.length} data bytes`);
  metadata = checkMetadata(metadata, bad);
  // a file this project wrote always carries its checksum: one without (a header edited or damaged so that the
  // key is gone, or a checkpoint from before checksums) is refused unless RETRO_ALLOW_UNCHECKED=1
  if (metadata[CRC_KEY] === undefined && metadata.format === "retro-ts" && process.env.RETRO_ALLOW_UNCHECKED !== "1")
    bad(
      `written by retro-ts but without its data checksum (${CRC_KEY}): damaged header or a checkpoint from ` +
        `before checksums; RETRO_ALLOW_UNCHECKED=1 loads it unchecked`,
    );
  if (metadata[CRC_KEY] !== undefined) {
    if (String(zlib.crc32(data)) !== metadata[CRC_KEY]) bad("data checksum mismatch (damaged file)");
    metadata = { ...metadata };
    delete metadata[CRC_KEY];
  }
  return { path: file, metadata, tensors, data };
}

/** A tensor's values as float32 (F32 only: this project keeps fp32 weights). */
export function tensorF32(f: SafetensorsFile, name: string): Float32Array {
  const t = f.tensors.get(name);
  if (!t) throw new RetroError("mismatch", `${f.path}: no tensor ${name}`);
  if (t.dtype !== "F32") throw new RetroError("mismatch", `${f.path}: tensor ${name} is ${t.dtype}, expected F32`);
  const out = new Float32Array((t.end - t.begin) / 4);
  Buffer.from(out.buffer).set(f.data.subarray(t.begin, t.end));
  return out;
}

/** Integer tensor (I32 or I64) as Int32Array; values outside int32 are refused. */
export function tensorI32(f: SafetensorsFile, name: string): Int32Array {
  const t = f.tensors.get(name);
  if (!t) throw new RetroError("mismatch", `${f.path}: no tensor ${name}`);
  const bytes = f.data.subarray(t.begin, t.end);
  if (t.dtype === "I32") {
    const out = new Int32Array(bytes.length / 4);
    Buffer.from(out.buffer).set(bytes);
    return out;
  }
  if (t.dtype !== "I64")
    throw new RetroError("mismatch", `${f.path}: tensor ${name} is ${t.dtype}, expected an integer type`);
  const out = new Int32Array(bytes.length / 8);
  for (let i = 0; i < out.length; i++) {
    const v = bytes.readBigInt64LE(i * 8);
    if (v > 2147483647n || v < -2147483648n)
      throw new RetroError("corrupt", `${f.path}: ${name}[${i}] = ${v} does not fit int32`);
    out[i] = Number(v);
  }
  return out;
}

export interface TensorOut {
  dtype: "F32" | "I32";
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Serialise tensors (in the given order) and metadata to the safetensors byte layout. */
export function encodeSafetensors(tensors: Map<string, TensorOut>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  // CRC-32 of the data section, checked on read (a flipped byte in a checkpoint was resumed silently);
  // other tools ignore the extra metadata key
  let crc = 0;
  for (const t of tensors.values())
    crc = zlib.crc32(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), crc);
  header.__metadata__ = { ...metadata, [CRC_KEY]: String(crc) };
  let offset = 0;
  for (const [name, t] of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`safetensors: ${name} has ${t.data.length} values for shape [${t.shape}]`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n * 4] };
    offset += n * 4;
  }
  let h = Buffer.from(JSON.stringify(header), "utf8");
  const padded = Math.ceil(h.length / 8) * 8;
  h = Buffer.concat([h, Buffer.alloc(padded - h.length, 0x20)]);
  const out = Buffer.alloc(8 + h.length + offset);
  out.writeBigUInt64LE(BigInt(h.length), 0);
  h.copy(out, 8);
  let pos = 8 + h.length;
  for (const t of tensors.values()) {
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Atomic write (temp file, then rename). */
export function writeSafetensors(
  file: string,
  tensors: Map<string, TensorOut>,
  metadata: Record<string, string> = {},
): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
