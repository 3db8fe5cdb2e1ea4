/**
 * `retro db build`: ingest → tokens → chunks → embed → index, then (by default) the neighbour
 * query for the train and valid splits. Each stage records its result in manifest.json when it is
 * complete; a re-run skips finished stages and, inside the embed and query stages, recomputes only
 * the blocks that are missing or fail their checks. Killing the process at any point and running
 * again gives byte-identical outputs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { diffKeys, isRetrievalOnly, resolveConfig, type DbConfig } from "./config.ts";
import { CHUNK_COLS, DB_FORMAT, Database, type DatasetInfo, type Manifest } from "./database.ts";
import { Retriever, openDbEmbedder } from "./retriever.ts";
import { indexBackend } from "../search/registry.ts";
import { openSource, type SourceStats } from "../data/sources.ts";
import { SplitWriter, dtypeFor, keyDataset } from "../data/tokenstore.ts";
import { gpt2Tokenizer, loadTokenizer, type Tokenizer } from "../tokenizer/tokenizer.ts";
import { trainBpe } from "../tokenizer/bpe.ts";
import { RetroError } from "../util/errors.ts";
import { LOCK_FILE, lockFolder } from "../util/lock.ts";
import { readJson, removeStaleTemps, writeJsonAtomic } from "../util/fsx.ts";
import { blockIsValid, blockName, blockRanges, readBlock, writeBlock } from "../util/blockfile.ts";
import { hashUniform } from "../util/rng.ts";
import { log, progress } from "../util/progress.ts";

export type Stage = "tokens" | "chunks" | "embed" | "index" | "query";
export const STAGES: Stage[] = ["tokens", "chunks", "embed", "index", "query"];

function manifestPath(dir: string) {
  return path.join(dir, "manifest.json");
}
function loadManifest(dir: string, c: DbConfig): Manifest {
  const p = manifestPath(dir);
  return fs.existsSync(p)
    ? readJson<Manifest>(p, "database manifest")
    : { format: DB_FORMAT, chunkLength: c.chunkLength };
}
export function saveManifest(dir: string, m: Manifest) {
  writeJsonAtomic(manifestPath(dir), m);
}

/** The file that marks a folder as a database (written before anything else). */
export const DB_MARKER = ".retro-db";

function isLegacyDatabase(dir: string): boolean {
  try {
    const m = JSON.parse(fs.readFileSync(manifestPath(dir), "utf8")) as { format?: unknown };
    return m.format === DB_FORMAT;
  } catch {
    return false;
  }
}

/**
 * Write config.json, or check that an existing one matches once a stage has finished (a changed config is refused,
 * keys named).
 */
export function prepareDir(dir: string, config: DbConfig): void {
  fs.mkdirSync(dir, { recursive: true });
  // a folder this build did not make (a training run, anything else) is never written into or cleaned up
  const marker = path.join(dir, DB_MARKER);
  if (!fs.existsSync(marker)) {
    // a database built before the marker existed has a manifest.json of this format; any other is not ours
    if (!isLegacyDatabase(dir) && fs.readdirSync(dir).some((f) => f !== LOCK_FILE)) {
      throw new RetroError(
        "usage",
        `${dir} is not empty and is not a retro-ts database (no ${DB_MARKER}, no manifest.json): choose a new or ` +
          `empty folder`,
      );
    }
    fs.writeFileSync(marker, "a retro-ts database folder (retro db build)\n");
  }
  const p = path.join(dir, "config.json");
  if (!fs.existsSync(manifestPath(dir))) {
    // no stage has finished: whatever is here came from an attempt that failed (a wrong path, say); start over
    fs.rmSync(path.join(dir, "tokenizer.json"), { force: true });
    fs.rmSync(p, { force: true });
  }
  if (fs.existsSync(p)) {
    const old = readJson<DbConfig>(p, "database config");
    const diff = diffKeys(old, config);
    if (diff.length)
      throw new RetroError(
        "mismatch",
        `${dir} was built with another config (differs in: ${diff.join(", ")}); use a new output folder or the same ` +
          `config`,
      );
  } else writeJsonAtomic(p, config);
  for (const sub of ["", "tokens", "embed", "index", "neighbours/train", "neighbours/valid"])
    removeStaleTemps(path.join(dir, sub));
}

/**
 * Is this document in the held-out split? Decided per document by (seed, dataset, key) alone; never for a
 * retrieval-only dataset. A dataset's own `validFraction` overrides the corpus's (1: a held-out-only dataset).
 */
export function isHeldOut(
  seed: number,
  ds: { name: string; weight?: number; validFraction?: number },
  key: string,
  fraction: number,
): boolean {
  return !isRetrievalOnly(ds) && hashUniform(seed, `${ds.name}\u0000${key}`) < (ds.validFraction ?? fraction);
}

async function stageTokens(dir: string, c: DbConfig, man: Manifest): Promise<void> {
  let tok: Tokenizer;
  if (c.tokenizer.kind === "gpt2") tok = gpt2Tokenizer();
  else {
    const tp = path.join(dir, "tokenizer.json");
    if (!fs.existsSync(tp)) {
      log(`training a byte-level BPE of ${c.tokenizer.vocabSize} ids on the training documents...`);
      const stats: SourceStats = { skippedLines: 0 };
      const budget = c.tokenizer.trainChars / c.datasets.length;
      const texts = async function* () {
        for (const ds of c.datasets) {
          let used = 0;
          for await (const d of openSource(ds, stats)) {
            if (used >= budget) break;
            if (isHeldOut(c.seed, ds, d.key, c.validFraction)) continue;
            used += d.text.length;
            yield d.text;
          }
        }
      };
      writeJsonAtomic(tp, await trainBpe(texts(), c.tokenizer.vocabSize));
    }
    tok = loadTokenizer(tp);
  }
  const dtype = dtypeFor(tok.vocabSize);
  const tdir = path.join(dir, "tokens");
  const train = new SplitWriter(tdir, "train", dtype, tok.eod);
  const valid = new SplitWriter(tdir, "valid", dtype, tok.eod);
  const datasets: DatasetInfo[] = [];
  for (let di = 0; di < c.datasets.length; di++) {
    const ds = c.datasets[di];
    const stats: SourceStats = { skippedLines: 0 };
    const info: DatasetInfo = { name: ds.name, weight: ds.weight ?? 1, trainDocs: 0, validDocs: 0, skippedLines: 0 };
    let ordinal = 0;
    const t0 = Date.now();
    // a source of token ids (a Megatron dataset) is decoded with the database's tokenizer, then encoded again
    const eod = tok.eod;
    const spec =
      ds.source === "megatron"
        ? { ...ds, detokenize: (ids: Int32Array) => tok.decode(ids.filter((t) => t !== eod)) }
        : ds;
    for await (const doc of openSource(spec, stats)) {
      const ids = tok.encode(doc.text);
      if (ids.length === 0) continue;
      if (isHeldOut(c.seed, ds, doc.key, c.validFraction)) valid.addDocument(di, ordinal, ids), info.validDocs++;
      else train.addDocument(di, ordinal, ids), info.trainDocs++;
      ordinal++;
    }
    info.skippedLines = stats.skippedLines;
    if (ordinal === 0)
      throw new RetroError("badInput", `dataset "${ds.name}" (${ds.path}) holds no documents with text`);
    const docs = isRetrievalOnly(ds)
      ? `${info.trainDocs} retrieval-only`
      : `${info.trainDocs} train + ${info.validDocs} held-out`;
    const skipped = stats.skippedLines ? `, ${stats.skippedLines} malformed lines skipped` : "";
    log(`tokenized ${ds.name}: ${docs} documents${skipped} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    datasets.push(info);
  }
  const splits = { train: train.finish(), valid: valid.finish() };
  if (splits.train.docs === 0) throw new RetroError("badInput", "the corpus is empty: no training documents");
  man.tokenizer = { id: tok.id, vocabSize: tok.vocabSize, eod: tok.eod, dtype };
  man.datasets = datasets;
  man.splits = splits;
}

function stageChunks(dir: string, c: DbConfig, man: Manifest): void {
  const docsBuf = fs.readFileSync(path.join(dir, "tokens", "train.docs"));
  const docs = new Uint32Array(docsBuf.buffer.slice(docsBuf.byteOffset, docsBuf.byteOffset + docsBuf.length));
  const m = c.chunkLength;
  let n = 0;
  for (let d = 0; d < docs.length / 4; d++) n += Math.ceil(docs[4 * d + 3] / m);
  const table = new Uint32Array(n * CHUNK_COLS);
  let i = 0,
    padded = 0;
  for (let d = 0; d < docs.length / 4; d++) {
    const ds = docs[4 * d],
      start = docs[4 * d + 2],
      len = docs[4 * d + 3];
    for (let s = 0; s < len; s += m) {
      const l = Math.min(m, len - s);
      if (l < m) padded++;
      table.set([ds, d, start + s, l], i * CHUNK_COLS);
      i++;
    }
  }
  writeBlock(path.join(dir, "chunks.blk"), table, n, CHUNK_COLS);
  man.chunks = { count: n, padded };
}

async function stageEmbed(dir: string, c: DbConfig, man: Manifest, db: Database): Promise<void> {
  const backend = indexBackend(c.index.description, c.index.store);
  if (backend.reads === "texts") {
    // it reads the chunk texts, not vectors
    man.embeddings = { embedderId: backend.textEmbedderId ?? backend.name, dim: 0, blocks: 0 };
    return;
  }
  const t0 = Date.now();
  const emb = await openDbEmbedder(db);
  const fitSeconds = (Date.now() - t0) / 1000;
  const edir = path.join(dir, "embed");
  const ranges = blockRanges(db.nChunks, c.embedBlockSize);
  const todo = ranges.filter(([s, e]) => !blockIsValid(blockName(edir, s, e), Float32Array));
  log(
    `embedding ${db.nChunks} chunks with ${emb.id} (${ranges.length - todo.length}/${ranges.length} blocks already ` +
      `done)`,
  );
  const bar = progress("embed", db.nChunks, "chunks");
  bar.update(db.nChunks - todo.reduce((a, [s, e]) => a + e - s, 0));
  for (const [s, e] of todo) {
    const texts: string[] = [];
    for (let i = s; i < e; i++) texts.push(db.chunkText(i));
    const vecs = await emb.embed(texts);
    writeBlock(blockName(edir, s, e), vecs, e - s, emb.dim);
    bar.increment(e - s);
  }
  bar.stop();
  man.embeddings = {
    embedderId: emb.id,
    dim: emb.dim,
    blocks: ranges.length,
    fitSeconds,
    embedSeconds: (Date.now() - t0) / 1000 - fitSeconds,
  };
}

async function stageIndex(dir: string, c: DbConfig, man: Manifest, db: Database): Promise<void> {
  const emb = man.embeddings!;
  const backend = indexBackend(c.index.description, c.index.store);
  const idx = backend.create(c.index, emb.dim, db);
  const t0 = Date.now();
  if (backend.reads === "texts") {
    log(`indexing the words of ${db.nChunks} chunks (${c.index.description})...`);
    await idx.add({ first: 0, count: db.nChunks });
  } else {
    const bar = progress("index add", db.nChunks, "vectors");
    // HNSW and SQ encodings need no training; vectors are added in blocks as they were embedded
    for (const [s, e] of blockRanges(db.nChunks, c.embedBlockSize)) {
      const b = readBlock(blockName(path.join(dir, "embed"), s, e), Float32Array);
      if (b.cols !== emb.dim)
        throw new RetroError("mismatch", `embedding block ${s}-${e} has dimension ${b.cols}, index expects ${emb.dim}`);
      await idx.add({ first: s, count: e - s, vectors: b.data });
      bar.increment(e - s);
    }
    bar.stop();
  }
  const files = await idx.save(path.join(dir, "index"));
  man.index = {
    description: c.index.description,
    dim: emb.dim,
    size: idx.size,
    embedderId: emb.embedderId,
    buildSeconds: (Date.now() - t0) / 1000,
    ...files,
  };
}

/** Text of each chunk of the samples [s, e) of a split: sample i, chunk j = tokens [i·seq + j·m, +m). */
function sampleChunkTexts(db: Database, split: string, s: number, e: number, seq: number): string[] {
  const r = db.split(split),
    m = db.m,
    out: string[] = [];
  for (let i = s; i < e; i++) {
    const toks = r.read(i * seq, (i + 1) * seq);
    for (let j = 0; j < seq / m; j++)
      out.push(db.tokenizer.decode(toks.subarray(j * m, (j + 1) * m).filter((t) => t !== db.tokenizer.eod)));
  }
  return out;
}

/** Keys (dataset·2³² + ordinal) of every document that sample i of a split touches (its seq+1 tokens). */
export function sampleDocKeys(db: Database, split: string, i: number, seq: number): Set<number> {
  const r = db.split(split);
  const keys = new Set<number>();
  const last = Math.min(r.nTokens - 1, (i + 1) * seq);
  for (let d = r.docAt(i * seq); d < r.nDocs && r.docStart(d) <= last; d++) keys.add(r.docKey(d));
  return keys;
}

export function samplesIn(db: Database, split: string, seq: number): number {
  return Math.max(0, Math.floor((db.split(split).nTokens - 1) / seq));
}

/**
 * Megatron's query step: for every chunk of every sample, search `candidates` neighbours, drop
 * each DB chunk whose document appears anywhere in the sample, keep the best `keep` (−1 padded).
 */
/** one slice of the query stage: blocks b with b mod n = i (`retro db query --shard i/n`) */
export interface Shard {
  i: number;
  n: number;
}

/** "i/n" → a shard, 0 ≤ i < n */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text);
  const i = m ? Number(m[1]) : NaN,
    n = m ? Number(m[2]) : NaN;
  if (!m || !(n >= 1 && n <= 65536) || !(i < n))
    throw new RetroError("usage", `--shard: expected i/n with 0 ≤ i < n ≤ 65536, got "${text}"`);
  return { i, n };
}

/**
 * Compute the neighbours of a split's samples (resumable: valid blocks are kept). With `shard`, only the blocks
 * b with b mod n = i, and the manifest is not touched: N processes — on N machines sharing the database folder —
 * each take a shard, and `mergeQuery` checks that every block is there and records the split. Each block is a
 * function of the database alone, so the merged result is byte-identical to one process's.
 */
export async function stageQuery(dir: string, c: DbConfig, db: Database, split: string, shard?: Shard): Promise<void> {
  const man = db.manifest;
  const { seq, candidates, keep, blockSize } = c.query;
  const m = db.m,
    l = seq / m;
  const retriever = await Retriever.open(db);
  const retrievalOnly = new Set((man.datasets ?? []).flatMap((d, i) => (isRetrievalOnly(d) ? [i] : [])));
  const qdir = path.join(dir, "neighbours", split);
  fs.mkdirSync(qdir, { recursive: true });
  const n = samplesIn(db, split, seq);
  const ranges = blockRanges(n, blockSize).filter((_, b) => !shard || b % shard.n === shard.i);
  const todo = ranges.filter(([s, e]) => !blockIsValid(blockName(qdir, s, e), Int32Array));
  log(
    `querying neighbours of ${n} ${split} samples × ${l} chunks${shard ? ` (shard ${shard.i}/${shard.n})` : ""} ` +
      `(${ranges.length - todo.length}/${ranges.length} blocks already done)`,
  );
  const bar = progress(`query ${split}`, n * l, "chunks");
  bar.update((n - todo.reduce((a, [s, e]) => a + e - s, 0)) * l);
  for (const [s, e] of todo) {
    // a sample made only of retrieval-only documents is never trained on: it is not searched (neighbours −1)
    const wanted: { i: number; excluded: Set<number> }[] = [];
    for (let i = s; i < e; i++) {
      const excluded = sampleDocKeys(db, split, i, seq);
      if (!retrievalOnly.size || ![...excluded].every((key) => retrievalOnly.has(keyDataset(key))))
        wanted.push({ i, excluded });
    }
    // every chunk of a sample excludes the documents the whole sample touches
    const res = await retriever.search(
      wanted.flatMap(({ i }) => sampleChunkTexts(db, split, i, i + 1, seq)),
      {
        keep,
        candidates,
        exclude: wanted.flatMap(({ excluded }) => Array.from({ length: l }, () => excluded)),
      },
    );
    const out = new Int32Array((e - s) * l * keep).fill(-1);
    wanted.forEach(({ i }, w) => out.set(res.ids.subarray(w * l * keep, (w + 1) * l * keep), (i - s) * l * keep));
    writeBlock(blockName(qdir, s, e), out, (e - s) * l, keep);
    bar.increment((e - s) * l);
  }
  bar.stop();
  if (shard) return; // the merge records the split once every shard's blocks are there
  man.neighbours = {
    ...(man.neighbours ?? {}),
    [split]: { seq, samples: n, chunksPerSample: l, keep, candidates, blockSize, embedderId: retriever.embedderId },
  };
}

/**
 * After sharded queries: every block of the split must be present and valid (CRC) exactly once — no block
 * missing, none of another block size or sample count — then the split is recorded in the manifest as a single
 * process would record it. Missing blocks are named with the shard that owes them.
 */
export async function mergeQuery(dir: string, c: DbConfig, db: Database, split: string, shards: number): Promise<void> {
  const { seq, candidates, keep, blockSize } = c.query;
  const l = seq / db.m;
  const qdir = path.join(dir, "neighbours", split);
  const n = samplesIn(db, split, seq);
  const ranges = blockRanges(n, blockSize);
  const expected = new Set(ranges.map(([s, e]) => path.basename(blockName(qdir, s, e))));
  const missing = ranges
    .map(([s, e], b) => ({ file: blockName(qdir, s, e), b }))
    .filter(({ file }) => !blockIsValid(file, Int32Array));
  if (missing.length) {
    const owed = [...new Set(missing.map(({ b }) => b % shards))].sort((x, y) => x - y);
    throw new RetroError(
      "badInput",
      `${qdir}: ${missing.length} of ${ranges.length} neighbour blocks missing or damaged (first: ` +
        `${path.basename(missing[0].file)}); shards ${owed.map((i) => `${i}/${shards}`).join(", ")} have not ` +
        `finished (re-run them: finished blocks are kept)`,
    );
  }
  const stray = fs.existsSync(qdir) ? fs.readdirSync(qdir).filter((f) => f.endsWith(".blk") && !expected.has(f)) : [];
  if (stray.length)
    throw new RetroError(
      "mismatch",
      `${qdir}: ${stray.length} block file(s) of another partition (first: ${stray[0]}): shards run with another ` +
        `block size or database; remove them and re-run the shards`,
    );
  const retriever = await Retriever.open(db);
  db.manifest.neighbours = {
    ...(db.manifest.neighbours ?? {}),
    [split]: { seq, samples: n, chunksPerSample: l, keep, candidates, blockSize, embedderId: retriever.embedderId },
  };
}

export interface BuildOptions {
  /** stop after this stage */
  until?: Stage;
  /** splits whose neighbours the query stage computes */
  splits?: string[];
}

/** Run (or resume) the whole build. Returns the finished manifest. */
export async function buildDatabase(dir: string, userConfig: unknown, opts: BuildOptions = {}): Promise<Manifest> {
  const c = resolveConfig(userConfig);
  const unlock = lockFolder(dir, "retro db build");
  try {
    prepareDir(dir, c);
    return await buildLocked(dir, c, opts);
  } finally {
    unlock();
  }
}

async function buildLocked(dir: string, c: DbConfig, opts: BuildOptions): Promise<Manifest> {
  const man = loadManifest(dir, c);
  const stop = STAGES.indexOf(opts.until ?? "query");
  const t0 = Date.now();
  if (!man.splits) {
    await stageTokens(dir, c, man);
    saveManifest(dir, man);
  }
  if (stop < 1) return man;
  if (!man.chunks) {
    stageChunks(dir, c, man);
    saveManifest(dir, man);
  }
  const db = new Database(dir, man);
  try {
    if (stop >= 2 && !man.embeddings) {
      await stageEmbed(dir, c, man, db);
      saveManifest(dir, man);
    }
    const indexGone = man.index && !indexBackend(man.index.description, c.index.store).isSaved(path.join(dir, "index"));
    if (indexGone) log(`the index of ${dir} was deleted: building it again from the stored embeddings`);
    if (stop >= 3 && (!man.index || indexGone)) {
      // chunks added since the build (retro db add) have no embedding blocks yet: embedded first, as at build time
      if (indexGone) await stageEmbed(dir, c, man, db);
      await stageIndex(dir, c, man, db);
      saveManifest(dir, man);
    }
    if (stop >= 4) {
      for (const split of opts.splits ?? ["train", "valid"]) {
        const done = man.neighbours?.[split];
        if (done) {
          // a finished split whose blocks were since deleted or damaged is queried again (those blocks only)
          const qdir = path.join(dir, "neighbours", split);
          const broken = blockRanges(done.samples, done.blockSize).filter(
            ([s, e]) => !blockIsValid(blockName(qdir, s, e), Int32Array),
          ).length;
          if (!broken) continue;
          log(`${split}: ${broken} neighbour block(s) missing or damaged; recomputing them`);
        }
        await stageQuery(dir, c, db, split);
        saveManifest(dir, man);
      }
    }
  } finally {
    db.close();
  }
  log(`database ${dir} ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return man;
}
