/**
 * A retrieval database on disk and read access to it. Layout of a database folder:
 *   config.json            the full build config (a re-run with another config is refused)
 *   manifest.json          what each finished stage produced: tokenizer id, counts, checksums
 *   tokenizer.json         the learned BPE (absent for gpt2)
 *   tokens/{train,valid}.{tok,docs}   the token store (see data/tokenstore.ts)
 *   chunks.blk             uint32 [nChunks, 4]: dataset, train document index, start, length
 *   embed/                 embedder state and chunk embeddings, float32 blocks
 *   index/                 the search index, written by its backend (src/search/)
 *   neighbours/<split>/    int32 blocks [samples·l, keep] of chunk ids, −1 padded
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { DbConfig } from "./config.ts";
import { JOURNAL, recoverUpdate } from "./journal.ts";
import { lockHolder, sleepSync, tryLockFolder } from "../util/lock.ts";
import { log } from "../util/progress.ts";
import { RetroError } from "../util/errors.ts";
import { readJson } from "../util/fsx.ts";
import { readBlock, blockName, blockRanges } from "../util/blockfile.ts";
import { SplitReader } from "../data/tokenstore.ts";
import { loadTokenizer, type Tokenizer } from "../tokenizer/tokenizer.ts";
import { indexBackend } from "../search/registry.ts";
import type { SearchIndex } from "../search/types.ts";

export { DB_FORMAT, type DatasetInfo, type Manifest } from "./manifest.ts";
import { DB_FORMAT, type Manifest } from "./manifest.ts";

export const CHUNK_COLS = 4;

export class Database {
  readonly manifest: Manifest;
  readonly config: DbConfig;
  readonly tokenizer: Tokenizer;
  readonly train: SplitReader;
  readonly valid: SplitReader;
  readonly chunks: Uint32Array; // [n, 4]
  readonly nChunks: number;
  readonly m: number;
  private indexCache?: Promise<SearchIndex>;
  private lastBlock?: { file: string; data: Int32Array };

  /** `manifest`: the build's live manifest object, so that stages finished after opening are seen. */
  constructor(
    readonly dir: string,
    manifest?: Manifest,
  ) {
    if (!fs.existsSync(dir)) throw new RetroError("notFound", `database not found: ${dir}`);
    // A reader may meet an update (`retro db add`) in its commit: the journal written, files being renamed into
    // place. It waits for a live writer to finish (the commit is renames: milliseconds) and rolls forward, under
    // the folder's lock, the update of a writer that died; what it read in between (an old manifest beside a new
    // token file, say) is read again rather than reported corrupt.
    const deadline = Date.now() + OPEN_WAIT_MS;
    for (;;) {
      settleUpdate(dir, deadline);
      const stamp = manifest ? "" : manifestStamp(dir);
      try {
        const st = readState(dir, manifest);
        this.manifest = st.manifest;
        this.config = st.config;
        this.tokenizer = st.tokenizer;
        this.m = st.m;
        this.train = st.train;
        this.valid = st.valid;
        this.chunks = st.chunks;
        this.nChunks = st.nChunks;
        return;
      } catch (e) {
        const writer = lockHolder(dir);
        // read while a live writer renames files into place: a file missing or not matching the manifest
        const midCommit =
          (e instanceof RetroError && (e.kind === "corrupt" || e.kind === "notFound")) ||
          (e as NodeJS.ErrnoException).code === "ENOENT";
        // a writer that finished between this reader's reads leaves no lock but another manifest behind it
        const transient =
          midCommit && ((writer !== null && writer !== process.pid) || (!manifest && manifestStamp(dir) !== stamp));
        if (!transient || Date.now() > deadline) throw e;
        sleepSync(50);
      }
    }
  }

  /** the embedder of the chunk embeddings (what an index store records of its vectors) */
  get embedderId(): string | undefined {
    return this.manifest.embeddings?.embedderId;
  }

  /** Refuse neighbour ids that are neither −1 nor a chunk of this database. */
  checkNeighbourIds(ids: Int32Array, where: string): void {
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] < -1 || ids[i] >= this.nChunks)
        throw new RetroError(
          "corrupt",
          `${where}: neighbour id ${ids[i]} is not a chunk of the database (${this.nChunks} chunks)`,
        );
    }
  }

  /** Refuse to use this database with a model or run made for another tokenizer or chunk length. */
  checkCompatible(tokenizerId: string, chunkLength: number): void {
    const mine = this.manifest.tokenizer!.id;
    if (mine !== tokenizerId)
      throw new RetroError("mismatch", `database ${this.dir} was built with tokenizer ${mine}, not ${tokenizerId}`);
    if (this.m !== chunkLength)
      throw new RetroError("mismatch", `database ${this.dir} has chunk length ${this.m}, not ${chunkLength}`);
  }

  chunkDoc(c: number): number {
    return this.chunks[CHUNK_COLS * c + 1];
  }

  /** Tokens of DB chunk c, padded with EOD to the chunk length. */
  chunkTokens(c: number): Uint32Array {
    const start = this.chunks[CHUNK_COLS * c + 2],
      len = this.chunks[CHUNK_COLS * c + 3];
    const out = new Uint32Array(this.m).fill(this.tokenizer.eod);
    out.set(this.train.read(start, start + len));
    return out;
  }

  chunkText(c: number): string {
    const start = this.chunks[CHUNK_COLS * c + 2],
      len = this.chunks[CHUNK_COLS * c + 3];
    return this.tokenizer.decode(this.train.read(start, start + len));
  }

  /**
   * The passage a retrieved chunk stands for in a prompt: its document, whole when it has at most `maxTokens`
   * tokens, else the window of `maxTokens` tokens of the document that holds the chunk with as much context
   * before it as after it. (A chunk is where a fact was found; the sentence around it is what a reader needs.)
   */
  passageTokens(c: number, maxTokens: number): Uint32Array {
    const doc = this.chunkDoc(c),
      d0 = this.train.docStart(doc),
      len = this.train.docLength(doc);
    if (len <= maxTokens) return this.train.read(d0, d0 + len);
    const cs = this.chunks[CHUNK_COLS * c + 2],
      cl = this.chunks[CHUNK_COLS * c + 3];
    const from = Math.max(
      d0,
      Math.min(d0 + len - maxTokens, cs - Math.floor((maxTokens - Math.min(cl, maxTokens)) / 2)),
    );
    return this.train.read(from, from + maxTokens);
  }

  /**
   * Retrieved tokens of neighbour c: the chunk and its continuation (the next chunk of the SAME
   * document; EOD where the document ends), `r = 2m` tokens. A −1 neighbour gives all EOD.
   */
  neighbourTokens(c: number, r = 2 * this.m): Uint32Array {
    const out = new Uint32Array(r).fill(this.tokenizer.eod);
    if (c < 0) return out;
    for (let j = 0, cc = c; j * this.m < r && cc >= 0 && cc < this.nChunks; j++, cc++) {
      if (j > 0 && this.chunkDoc(cc) !== this.chunkDoc(c)) break;
      out.set(this.chunkTokens(cc).subarray(0, Math.min(this.m, r - j * this.m)), j * this.m);
    }
    return out;
  }

  split(name: string): SplitReader {
    if (name === "train") return this.train;
    if (name === "valid") return this.valid;
    throw new RetroError("usage", `unknown split "${name}" (train, valid)`);
  }

  /** The search index (memory-mapped where its backend can), opened once. */
  openIndex(): Promise<SearchIndex> {
    const info = this.manifest.index;
    if (!info)
      throw new RetroError("badInput", `${this.dir}: the index stage has not run ("retro db build --out ${this.dir}")`);
    return (this.indexCache ??= indexBackend(info.description, this.config.index.store).open(
      path.join(this.dir, "index"),
      info,
      this.config.index,
      this,
    ));
  }

  /** Precomputed neighbours of one sample of a split: int32 [l, keep]. */
  sampleNeighbours(split: string, sample: number): Int32Array {
    const info = this.manifest.neighbours?.[split];
    if (!info)
      throw new RetroError(
        "badInput",
        `${this.dir}: neighbours of split "${split}" have not been computed ("retro db query --split ${split}")`,
      );
    if (sample < 0 || sample >= info.samples)
      throw new RetroError("usage", `sample ${sample} out of range [0, ${info.samples})`);
    const [s, e] = blockRanges(info.samples, info.blockSize)[Math.floor(sample / info.blockSize)];
    const file = blockName(path.join(this.dir, "neighbours", split), s, e);
    // samples are read in order (inspect, the in-context baseline): the last block read is kept
    if (this.lastBlock?.file !== file) this.lastBlock = { file, data: this.neighbourIdBlock(split, s, e) };
    const b = this.lastBlock;
    const rowsPer = info.chunksPerSample;
    return b.data.slice((sample - s) * rowsPer * info.keep, (sample - s + 1) * rowsPer * info.keep);
  }

  /**
   * The neighbour ids of samples [s, e) of a split, as the query stage wrote them: [(e − s)·chunksPerSample, keep].
   * The block's own header must say that shape (a block of another shape, its CRC intact, would shift every
   * sample after it) and every id must be −1 or a chunk.
   */
  neighbourIdBlock(split: string, s: number, e: number): Int32Array {
    const info = this.manifest.neighbours![split];
    const file = blockName(path.join(this.dir, "neighbours", split), s, e);
    const b = readBlock(file, Int32Array);
    const rows = (e - s) * info.chunksPerSample;
    if (b.rows !== rows || b.cols !== info.keep)
      throw new RetroError(
        "corrupt",
        `${file}: a block of ${b.rows}×${b.cols} neighbour ids, the manifest says ${rows}×${info.keep} ` +
          `(${e - s} samples × ${info.chunksPerSample} chunks, top ${info.keep}); run "retro db build --out ` +
          `${this.dir}" to recompute it`,
      );
    this.checkNeighbourIds(b.data, file);
    return b.data;
  }

  /**
   * Neighbour tokens [rows, k, r] for neighbour ids [rows, stride] (the first k ids of each row; −1 gives all
   * EOD): the one place where the model's neighbour tensors are assembled (training loader, evaluation,
   * generation).
   */
  neighbourBlock(ids: ArrayLike<number>, rows: number, stride: number, k: number, r = 2 * this.m): Int32Array {
    if (k > stride) throw new RetroError("usage", `k = ${k} neighbours asked, rows hold ${stride}`);
    if (ids.length < rows * stride)
      throw new RetroError("mismatch", `neighbour ids: ${ids.length} entries, expected ${rows}×${stride}`);
    const out = new Int32Array(rows * k * r);
    for (let j = 0; j < rows; j++)
      for (let t = 0; t < k; t++) out.set(this.neighbourTokens(ids[j * stride + t], r), (j * k + t) * r);
    return out;
  }

  /**
   * The retrieved tokens of sample i of a split, as the model reads them: uint32 [l, k, r], neighbour
   * t of chunk j = chunk + continuation of the j-th chunk's t-th precomputed neighbour (−1 → all EOD).
   */
  sampleRetrieved(split: string, sample: number, k: number, r = 2 * this.m): Uint32Array {
    const keep = this.manifest.neighbours?.[split]?.keep ?? 0;
    if (k > keep) throw new RetroError("usage", `k = ${k} neighbours asked, the database kept ${keep}`);
    const nb = this.sampleNeighbours(split, sample);
    return new Uint32Array(this.neighbourBlock(nb, nb.length / keep, keep, k, r).buffer);
  }

  close(): void {
    this.train.close();
    this.valid.close();
  }
}

/** how long opening a database waits for a live `db add` to commit (its journal's renames) */
const OPEN_WAIT_MS = 30_000;

/**
 * Before reading: an update whose journal is written is finished — by its live writer (waited for until
 * `deadline`), or here, under the folder's lock, for a writer that died. One reader rolls forward; others wait.
 */
function settleUpdate(dir: string, deadline: number): void {
  let said = false;
  while (fs.existsSync(path.join(dir, JOURNAL))) {
    const holder = lockHolder(dir);
    if (holder === process.pid) return; // this process is the writer (its own commit step)
    if (holder === null) {
      let release: (() => void) | null = null;
      try {
        release = tryLockFolder(dir, "recovering an interrupted retro db add");
      } catch (e) {
        if (!(e instanceof RetroError && e.kind === "busy")) throw e; // another reader is rolling it forward
      }
      if (release) {
        try {
          recoverUpdate(dir);
        } finally {
          release();
        }
        return;
      }
    }
    if (Date.now() > deadline)
      throw new RetroError("busy", `${dir} is being updated by process ${holder ?? "?"}; retry when it is done`);
    if (!said) log(`${dir}: waiting for the update by process ${holder ?? "?"} to finish`);
    said = true;
    sleepSync(50);
  }
}

/** The manifest's bytes as read now ("" when absent): a commit in between two reads changes them. */
function manifestStamp(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, "manifest.json"), "utf8");
  } catch {
    return "";
  }
}

interface DbState {
  manifest: Manifest;
  config: DbConfig;
  tokenizer: Tokenizer;
  m: number;
  train: SplitReader;
  valid: SplitReader;
  chunks: Uint32Array;
  nChunks: number;
}

/** Read and check a database's manifest, config, tokenizer, token files and chunk table. */
function readState(dir: string, given?: Manifest): DbState {
  const manifest = given ?? readJson<Manifest>(path.join(dir, "manifest.json"), "database manifest");
  const config = readJson<DbConfig>(path.join(dir, "config.json"), "database config");
  if (manifest.format !== DB_FORMAT)
    throw new RetroError("corrupt", `${dir}: unknown database format "${manifest.format}" (expected ${DB_FORMAT})`);
  const t = manifest.tokenizer,
    s = manifest.splits;
  if (!t || !s || !manifest.chunks)
    throw new RetroError(
      "badInput",
      `${dir}: database is incomplete (tokens/chunks stage missing); run "retro db build" again`,
    );
  const tokenizer = loadTokenizer(t.id === "gpt2" ? "gpt2" : path.join(dir, "tokenizer.json"));
  if (tokenizer.id !== t.id)
    throw new RetroError("corrupt", `${dir}: tokenizer.json (${tokenizer.id}) does not match the manifest (${t.id})`);
  const m = manifest.chunkLength;
  // every open checks both token files against the SHA-256s and ids the build recorded (~30 ms per 10 MB)
  const train = new SplitReader(path.join(dir, "tokens"), "train", t.dtype, s.train, t.vocabSize);
  const valid = new SplitReader(path.join(dir, "tokens"), "valid", t.dtype, s.valid, t.vocabSize);
  const c = readBlock(path.join(dir, "chunks.blk"), Uint32Array);
  const chunks = c.data;
  const nChunks = c.rows;
  if (c.rows !== manifest.chunks.count)
    throw new RetroError(
      "corrupt",
      `${dir}: chunks.blk holds ${c.rows} chunks, manifest says ${manifest.chunks.count}`,
    );
  // every chunk inside the train token file and its document table
  for (let i = 0; i < nChunks; i++) {
    const doc = chunks[CHUNK_COLS * i + 1],
      start = chunks[CHUNK_COLS * i + 2],
      len = chunks[CHUNK_COLS * i + 3];
    if (doc >= train.nDocs || len > m || start + len > train.nTokens) {
      throw new RetroError(
        "corrupt",
        `${dir}: chunks.blk row ${i} (document ${doc}, tokens ${start}+${len}) lies outside the token store`,
      );
    }
  }
  return { manifest, config, tokenizer, m, train, valid, chunks, nChunks };
}
