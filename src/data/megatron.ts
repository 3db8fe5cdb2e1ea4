/**
 * Megatron-LM's indexed dataset (`PREFIX.bin` + `PREFIX.idx`, "MMIDIDX" version 1), the format its GPT and Retro
 * pretraining read — the hand-off to GPU clusters, and the way data prepared for Megatron comes in. Written here
 * from the format's public description (Megatron's `indexed_dataset.py` is Python; no Node library reads it):
 *
 *   .idx  b"MMIDIDX\x00\x00", <Q version 1, <B dtype code, <Q sequence count, <Q document-index count,
 *         int32 sequence lengths, int64 byte offsets of the sequences in .bin, int64 document index (0, …, count)
 *   .bin  the sequences' tokens back to back, in the dtype (uint16 for vocabularies under 65,500, else int32,
 *         as Megatron's `best_fitting_dtype` chooses)
 *
 * One sequence per document, each ending with the end-of-document token (as `preprocess_data.py --append-eod`
 * writes them), so a Megatron run reads exactly the tokens a retro-ts run reads.
 */
import * as fs from "node:fs";
import { createHash } from "node:crypto";
import { RetroError } from "../util/errors.ts";
import { tmpPathFor } from "../util/fsx.ts";

const MAGIC = Buffer.from("MMIDIDX\x00\x00", "latin1");
const CODES: Record<number, { name: string; bytes: number }> = {
  1: { name: "uint8", bytes: 1 },
  2: { name: "int8", bytes: 1 },
  3: { name: "int16", bytes: 2 },
  4: { name: "int32", bytes: 4 },
  5: { name: "int64", bytes: 8 },
  8: { name: "uint16", bytes: 2 },
};

export interface MegatronSummary {
  sequences: number;
  documents: number;
  tokens: number;
  dtype: string;
  /** SHA-256 of every token as little-endian int64, in order (the peer `megatron_indexed.py --sha256` prints it) */
  sha256: string;
}

/**
 * Write documents (token ids, end-of-document token included) as PREFIX.bin + PREFIX.idx, each file atomically
 * (temp file, then rename). `vocab` chooses the dtype.
 */
export function writeMegatronDataset(
  prefix: string,
  docs: Iterable<ArrayLike<number>>,
  vocab: number,
): MegatronSummary {
  const code = vocab < 65500 ? 8 : 4;
  const bytes = CODES[code].bytes;
  const binTmp = tmpPathFor(`${prefix}.bin`);
  const fd = fs.openSync(binTmp, "w");
  const lengths: number[] = [];
  const hash = createHash("sha256");
  let tokens = 0;
  try {
    for (const d of docs) {
      const buf = Buffer.alloc(d.length * bytes);
      const h = Buffer.alloc(d.length * 8);
      for (let i = 0; i < d.length; i++) {
        if (code === 8) buf.writeUInt16LE(d[i], 2 * i);
        else buf.writeInt32LE(d[i], 4 * i);
        h.writeBigInt64LE(BigInt(d[i]), 8 * i);
      }
      fs.writeSync(fd, buf);
      hash.update(h);
      lengths.push(d.length);
      tokens += d.length;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const n = lengths.length;
  const idx = Buffer.alloc(34 + 4 * n + 8 * n + 8 * (n + 1));
  MAGIC.copy(idx, 0);
  idx.writeBigUInt64LE(1n, 9);
  idx.writeUInt8(code, 17);
  idx.writeBigUInt64LE(BigInt(n), 18);
  idx.writeBigUInt64LE(BigInt(n + 1), 26);
  let off = 34,
    ptr = 0;
  for (const l of lengths) idx.writeInt32LE(l, (off += 4) - 4);
  for (const l of lengths) {
    idx.writeBigInt64LE(BigInt(ptr), off);
    off += 8;
    ptr += l * bytes;
  }
  for (let i = 0; i <= n; i++) idx.writeBigInt64LE(BigInt(i), off + 8 * i); // one document per sequence
  const idxTmp = tmpPathFor(`${prefix}.idx`);
  fs.writeFileSync(idxTmp, idx);
  fs.renameSync(binTmp, `${prefix}.bin`);
  fs.renameSync(idxTmp, `${prefix}.idx`);
  return { sequences: n, documents: n, tokens, dtype: CODES[code].name, sha256: hash.digest("hex") };
}

/**
 * The documents of a Megatron indexed dataset, in order: each document's sequences concatenated. Every field is
 * checked against the files (magic, version, dtype, counts, contiguous offsets, the .bin's size).
 */
export function* readMegatronDataset(prefix: string): Generator<Int32Array> {
  const where = `${prefix}.idx`;
  if (!fs.existsSync(where) || !fs.existsSync(`${prefix}.bin`))
    throw new RetroError("notFound", `Megatron dataset not found: ${prefix}.idx and ${prefix}.bin are both needed`);
  const idx = fs.readFileSync(where);
  const bad = (why: string): never => {
    throw new RetroError("corrupt", `${where}: not a Megatron indexed dataset (${why})`);
  };
  if (idx.length < 34 || !idx.subarray(0, 9).equals(MAGIC)) bad("no MMIDIDX header");
  if (idx.readBigUInt64LE(9) !== 1n) bad(`version ${idx.readBigUInt64LE(9)}, only 1 is read`);
  const dt = CODES[idx.readUInt8(17)] ?? bad(`dtype code ${idx.readUInt8(17)} is not a token type`);
  const nseq = Number(idx.readBigUInt64LE(18)),
    ndoc = Number(idx.readBigUInt64LE(26));
  if (idx.length !== 34 + 12 * nseq + 8 * ndoc)
    bad(`${idx.length} bytes for ${nseq} sequences, ${ndoc} document indices`);
  const lengths = Array.from({ length: nseq }, (_, i) => idx.readInt32LE(34 + 4 * i));
  const pointers = Array.from({ length: nseq }, (_, i) => Number(idx.readBigInt64LE(34 + 4 * nseq + 8 * i)));
  const docIdx = Array.from({ length: ndoc }, (_, i) => Number(idx.readBigInt64LE(34 + 12 * nseq + 8 * i)));
  let expect = 0;
  for (let i = 0; i < nseq; i++) {
    if (lengths[i] < 0 || pointers[i] !== expect) bad(`sequence ${i} is not where the lengths put it`);
    expect += lengths[i] * dt.bytes;
  }
  if (ndoc < 1 || docIdx[0] !== 0 || docIdx[ndoc - 1] !== nseq || docIdx.some((d, i) => i > 0 && d < docIdx[i - 1]))
    bad("the document index must run from 0 to the sequence count");
  const size = fs.statSync(`${prefix}.bin`).size;
  if (size !== expect) throw new RetroError("corrupt", `${prefix}.bin: ${size} bytes, the index describes ${expect}`);
  const fd = fs.openSync(`${prefix}.bin`, "r");
  try {
    for (let d = 0; d + 1 < ndoc; d++) {
      const from = docIdx[d],
        to = docIdx[d + 1];
      const n = lengths.slice(from, to).reduce((a, b) => a + b, 0);
      const buf = Buffer.alloc(n * dt.bytes);
      if (n) fs.readSync(fd, buf, 0, buf.length, pointers[from] ?? 0);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++)
        out[i] =
          dt.bytes === 1
            ? dt.name === "uint8"
              ? buf.readUInt8(i)
              : buf.readInt8(i)
            : dt.bytes === 2
              ? dt.name === "uint16"
                ? buf.readUInt16LE(2 * i)
                : buf.readInt16LE(2 * i)
              : dt.bytes === 4
                ? buf.readInt32LE(4 * i)
                : Number(buf.readBigInt64LE(8 * i));
      yield out;
    }
  } finally {
    fs.closeSync(fd);
  }
}
