/**
 * The token store: one split (train or valid) as two raw little-endian files, memory-mappable by
 * any tool:
 *   <split>.tok   uint16 (vocab ≤ 65,536) or uint32 token ids; every document followed by EOD;
 *   <split>.docs  uint32 [nDocs, 4]: dataset index, document ordinal in its dataset, start offset
 *                 in <split>.tok, length in tokens (EOD excluded).
 * Writers append through a buffer to temp files that are renamed into place only when complete.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RetroError } from "../util/errors.ts";
import { sha256, sha256File, tmpPathFor } from "../util/fsx.ts";

export type TokenDtype = "uint16" | "uint32";
export const dtypeFor = (vocabSize: number): TokenDtype => (vocabSize <= 65536 ? "uint16" : "uint32");
const bytesOf = (d: TokenDtype) => (d === "uint16" ? 2 : 4);

export interface SplitInfo {
  docs: number;
  tokens: number;
  tokSha256: string;
  docsSha256: string;
}

class BufferedFile {
  private fd: number;
  private buf: Buffer;
  private used = 0;
  bytes = 0;
  constructor(
    readonly tmp: string,
    size = 1 << 22,
  ) {
    this.fd = fs.openSync(tmp, "w");
    this.buf = Buffer.allocUnsafe(size);
  }
  write(src: Uint8Array): void {
    if (this.used + src.length > this.buf.length) this.flush();
    if (src.length > this.buf.length) fs.writeSync(this.fd, src);
    else this.buf.set(src, this.used), (this.used += src.length);
    this.bytes += src.length;
  }
  flush(): void {
    if (this.used) fs.writeSync(this.fd, this.buf, 0, this.used);
    this.used = 0;
  }
  close(): void {
    this.flush();
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
  }
}

export class SplitWriter {
  private tok: BufferedFile;
  private docs: BufferedFile;
  private nTokens = 0;
  private nDocs = 0;
  constructor(
    private dir: string,
    private split: string,
    private dtype: TokenDtype,
    private eod: number,
  ) {
    fs.mkdirSync(dir, { recursive: true });
    this.tok = new BufferedFile(tmpPathFor(path.join(dir, `${split}.tok`)));
    this.docs = new BufferedFile(tmpPathFor(path.join(dir, `${split}.docs`)), 1 << 16);
  }
  addDocument(dataset: number, ordinal: number, ids: ArrayLike<number>): void {
    const n = ids.length;
    if (this.nTokens + n + 1 > 0xffffffff)
      throw new RetroError("badInput", `split ${this.split} exceeds 2^32 tokens; shard the corpus`);
    const arr = this.dtype === "uint16" ? new Uint16Array(n + 1) : new Uint32Array(n + 1);
    for (let i = 0; i < n; i++) arr[i] = ids[i];
    arr[n] = this.eod;
    this.tok.write(new Uint8Array(arr.buffer));
    this.docs.write(new Uint8Array(Uint32Array.of(dataset, ordinal, this.nTokens, n).buffer));
    this.nTokens += n + 1;
    this.nDocs++;
  }
  /** Close and move into place; returns the split's counts and checksums. */
  finish(): SplitInfo {
    this.tok.close();
    this.docs.close();
    const tokPath = path.join(this.dir, `${this.split}.tok`),
      docsPath = path.join(this.dir, `${this.split}.docs`);
    fs.renameSync(this.docs.tmp, docsPath);
    fs.renameSync(this.tok.tmp, tokPath);
    return { docs: this.nDocs, tokens: this.nTokens, tokSha256: sha256File(tokPath), docsSha256: sha256File(docsPath) };
  }
}

/** Read access to one split: the document table in memory, tokens read by range (pread). */
/** SHA-256 and largest id of a token file, in one pass. */
function scanTokens(file: string, bpe: number): { sha: string; max: number } {
  let max = 0;
  const sha = sha256File(file, (b) => {
    const view =
      bpe === 2
        ? new Uint16Array(b.buffer, b.byteOffset, b.length >> 1)
        : new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
    for (let i = 0; i < view.length; i++) if (view[i] > max) max = view[i];
  });
  return { sha, max };
}

export class SplitReader {
  readonly docs: Uint32Array; // [nDocs, 4]
  readonly nDocs: number;
  readonly nTokens: number;
  private fd: number;
  private bpe: number;

  /** `vocab`: ids must be below it (checked with the SHA-256s of `info` when both are given) */
  constructor(
    dir: string,
    split: string,
    readonly dtype: TokenDtype,
    info?: SplitInfo,
    vocab?: number,
  ) {
    const tokPath = path.join(dir, `${split}.tok`),
      docsPath = path.join(dir, `${split}.docs`);
    for (const p of [tokPath, docsPath])
      if (!fs.existsSync(p)) throw new RetroError("notFound", `token store file missing: ${p}`);
    const db = fs.readFileSync(docsPath);
    if (db.length % 16 !== 0) throw new RetroError("corrupt", `${docsPath}: truncated document table`);
    this.docs = new Uint32Array(db.buffer.slice(db.byteOffset, db.byteOffset + db.length));
    this.nDocs = this.docs.length / 4;
    this.bpe = bytesOf(dtype);
    const size = fs.statSync(tokPath).size;
    if (size % this.bpe !== 0)
      throw new RetroError("corrupt", `${tokPath}: size is not a multiple of ${this.bpe} bytes`);
    this.nTokens = size / this.bpe;
    if (info && (info.tokens !== this.nTokens || info.docs !== this.nDocs)) {
      throw new RetroError(
        "corrupt",
        `${dir}: ${split} split holds ${this.nTokens} tokens / ${this.nDocs} docs, manifest says ${info.tokens} / ` +
          `${info.docs} (truncated or replaced)`,
      );
    }
    if (this.nDocs > 0) {
      const last = (this.nDocs - 1) * 4;
      if (this.docs[last + 2] + this.docs[last + 3] + 1 !== this.nTokens)
        throw new RetroError("corrupt", `${dir}: ${split} document table does not match its token file`);
    }
    if (info?.docsSha256 && sha256(db) !== info.docsSha256)
      throw new RetroError("corrupt", `${docsPath}: SHA-256 differs from the manifest's (damaged or replaced)`);
    if (info?.tokSha256) {
      const { sha, max } = scanTokens(tokPath, this.bpe);
      if (sha !== info.tokSha256)
        throw new RetroError("corrupt", `${tokPath}: SHA-256 differs from the manifest's (damaged or replaced)`);
      if (vocab !== undefined && max >= vocab)
        throw new RetroError("corrupt", `${tokPath}: holds token id ${max}, the tokenizer has ${vocab}`);
    }
    this.fd = fs.openSync(tokPath, "r");
  }

  /** tokens [start, end) as a fresh Uint32Array */
  read(start: number, end: number): Uint32Array {
    const n = end - start;
    const buf = Buffer.allocUnsafe(n * this.bpe);
    if (start < 0 || end > this.nTokens || n < 0)
      throw new RetroError(
        "corrupt",
        `token read [${start}, ${end}) outside the split's ${this.nTokens} tokens (a table points past the token file)`,
      );
    const got = fs.readSync(this.fd, buf, 0, buf.length, start * this.bpe);
    if (got !== buf.length)
      throw new RetroError(
        "corrupt",
        `short read of tokens [${start}, ${end}): ${got} of ${buf.length} bytes (the token file changed)`,
      );
    const out = new Uint32Array(n);
    if (this.bpe === 2) for (let i = 0; i < n; i++) out[i] = buf.readUInt16LE(2 * i);
    else for (let i = 0; i < n; i++) out[i] = buf.readUInt32LE(4 * i);
    return out;
  }

  /**
   * The key that names document d across splits and databases' queries: dataset·2³² + ordinal in its dataset
   * (the exclusion rule compares a sample's documents with a neighbour's by it; `keyDataset` inverts the first part).
   */
  docKey(d: number): number {
    return this.docDataset(d) * 2 ** 32 + this.docOrdinal(d);
  }

  docDataset(d: number): number {
    return this.docs[4 * d];
  }
  docOrdinal(d: number): number {
    return this.docs[4 * d + 1];
  }
  docStart(d: number): number {
    return this.docs[4 * d + 2];
  }
  docLength(d: number): number {
    return this.docs[4 * d + 3];
  }

  /** index of the document that holds token offset `t` (EOD after a document belongs to it) */
  docAt(t: number): number {
    let lo = 0,
      hi = this.nDocs - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.docs[4 * mid + 2] <= t) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** The dataset index of a document key (SplitReader.docKey). */
export function keyDataset(key: number): number {
  return Math.floor(key / 2 ** 32);
}
