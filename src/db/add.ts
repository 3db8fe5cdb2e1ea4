/**
 * `retro db add`: knowledge that updates without retraining. New documents are tokenized with the database's
 * tokenizer, cut into chunks, embedded with its fitted embedder and added to its index as a new retrieval-only
 * dataset (weight 0: never trained on, retrieved from at once).
 *
 * Atomic: every new file (token and document tables, chunk table, index) is written next to its target under a
 * staging name; then a journal listing the renames is written (atomically), the renames are made, the manifest
 * replaced last and the journal removed. A crash before the journal leaves the database as it was (staging files
 * are swept); after it, the next open rolls the journal forward. Either before or after, never between.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { RetroError } from "../util/errors.ts";
import { lockFolder } from "../util/lock.ts";
import { checkDatasetName } from "./config.ts";
import { sha256File, writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";
import { writeBlock } from "../util/blockfile.ts";
import { openSource, type DatasetSpec } from "../data/sources.ts";
import { CHUNK_COLS, Database, type Manifest } from "./database.ts";
import { JOURNAL, STAGED, recoverUpdate, type Journal } from "./journal.ts";
import { indexBackend } from "../search/registry.ts";
import { openDbEmbedder } from "./retriever.ts";

export interface AddReport {
  dataset: string;
  documents: number;
  tokens: number;
  chunks: number;
  /** the database's chunk count after the add */
  totalChunks: number;
  seconds: number;
}

/**
 * Add the documents of `spec` (a text file or folder, or a JSONL file) to the database at `dir` as the new
 * retrieval-only dataset `spec.name`. `stopAfter: "journal"` (tests) stops as a crash would, after the journal.
 */
export interface AddOptions {
  /** (tests) stop as a crash would: after the staged files, or after the journal */
  stopAfter?: "staged" | "journal";
  /** the documents' texts, given in memory instead of read from `spec`'s source (`spec.path` is then a label) */
  texts?: string[];
}

export async function addDocuments(dir: string, spec: DatasetSpec, o: AddOptions = {}): Promise<AddReport> {
  checkDatasetName(spec.name, "--name");
  // an update needs a database: a missing or foreign folder is refused before the lock would create it
  if (!fs.existsSync(path.join(dir, "manifest.json")))
    throw new RetroError("notFound", `database not found: ${dir} (no manifest.json; build one with retro db build)`);
  const unlock = lockFolder(dir, "retro db add");
  try {
    recoverUpdate(dir);
    return await addLocked(dir, spec, o);
  } finally {
    unlock();
  }
}

async function addLocked(dir: string, spec: DatasetSpec, o: AddOptions): Promise<AddReport> {
  const t0 = performance.now();
  const db = new Database(dir);
  let open = true;
  const close = () => {
    if (open) (open = false), db.close();
  };
  try {
    const man: Manifest = JSON.parse(JSON.stringify(db.manifest));
    if (!man.index || !man.embeddings)
      throw new RetroError("badInput", `${dir}: the database has no index yet ("retro db build --out ${dir}" first)`);
    const datasets = man.datasets ?? [];
    if (datasets.some((d) => d.name === spec.name))
      throw new RetroError("usage", `${dir} already has a dataset named "${spec.name}" (choose another --name)`);
    const t = man.tokenizer!,
      tok = db.tokenizer,
      m = db.m,
      eod = t.eod;
    const dsIndex = datasets.length;
    // tokenize the new documents
    const stats = { skippedLines: 0 };
    const docs: Uint32Array[] = [];
    // documents given in memory (the server's POST /v1/documents) need no files; else the dataset's source
    const source = o.texts ? o.texts.map((text) => ({ text })) : openSource({ ...spec, weight: 0 }, stats);
    for await (const doc of source) {
      const ids = tok.encode(doc.text);
      if (ids.length) docs.push(Uint32Array.from(ids));
    }
    if (!docs.length) throw new RetroError("badInput", `${spec.path}: no text to add`);
    // token and document tables: the old bytes, then the new documents (each followed by the end token)
    const tokDir = path.join(dir, "tokens");
    const bpe = t.dtype === "uint16" ? 2 : 4;
    const oldTok = fs.readFileSync(path.join(tokDir, "train.tok")),
      oldDocs = fs.readFileSync(path.join(tokDir, "train.docs"));
    const newTokens = docs.reduce((a, d) => a + d.length + 1, 0);
    const startToken = oldTok.length / bpe;
    if (startToken + newTokens > 0xffffffff)
      throw new RetroError("badInput", `the train split would exceed 2^32 tokens`);
    const tokBuf = Buffer.alloc(oldTok.length + newTokens * bpe);
    oldTok.copy(tokBuf);
    const view =
      bpe === 2
        ? new Uint16Array(tokBuf.buffer, tokBuf.byteOffset, tokBuf.length / 2)
        : new Uint32Array(tokBuf.buffer, tokBuf.byteOffset, tokBuf.length / 4);
    const docRows = new Uint32Array(docs.length * 4);
    const firstDoc = oldDocs.length / 16;
    let at = startToken;
    const chunkRows: number[] = [];
    let padded = 0;
    docs.forEach((d, i) => {
      view.set(d, at);
      view[at + d.length] = eod;
      docRows.set([dsIndex, i, at, d.length], 4 * i);
      for (let s = 0; s < d.length; s += m) {
        const l = Math.min(m, d.length - s);
        if (l < m) padded++;
        chunkRows.push(dsIndex, firstDoc + i, at + s, l);
      }
      at += d.length + 1;
    });
    const docsBuf = Buffer.concat([oldDocs, Buffer.from(docRows.buffer)]);
    const n0 = db.nChunks,
      added = chunkRows.length / CHUNK_COLS,
      total = n0 + added;
    const chunkTable = new Uint32Array(total * CHUNK_COLS);
    chunkTable.set(db.chunks);
    chunkTable.set(chunkRows, n0 * CHUNK_COLS);
    const staged = (p: string) => p + STAGED;
    writeFileAtomic(staged(path.join(tokDir, "train.tok")), tokBuf);
    writeFileAtomic(staged(path.join(tokDir, "train.docs")), docsBuf);
    writeBlock(staged(path.join(dir, "chunks.blk")), chunkTable, total, CHUNK_COLS);
    // the new chunks' texts, decoded from the staged token buffer
    const text = (c: number) =>
      tok.decode(
        view.subarray(chunkTable[CHUNK_COLS * c + 2], chunkTable[CHUNK_COLS * c + 2] + chunkTable[CHUNK_COLS * c + 3]),
      );
    const renames: [string, string][] = [
      ["tokens/train.tok" + STAGED, "tokens/train.tok"],
      ["tokens/train.docs" + STAGED, "tokens/train.docs"],
      ["chunks.blk" + STAGED, "chunks.blk"],
    ];
    // the index: opened read into memory (not viewed: it is written again), the new chunks added, saved staged
    const backend = indexBackend(man.index.description, db.config.index.store);
    const idx = await backend.open(path.join(dir, "index"), man.index, db.config.index, db, { mmap: false });
    const vectors = backend.reads === "vectors" ? await embedNew(db, n0, total, text) : undefined;
    await idx.add({ first: n0, count: added, vectors, text });
    const files = await idx.save(staged(path.join(dir, "index")));
    renames.push(["index" + STAGED, "index"]);
    man.index = { ...man.index, size: idx.size, ...files };
    if (o.stopAfter === "staged") return report();
    man.datasets = [
      ...datasets,
      { name: spec.name, weight: 0, trainDocs: docs.length, validDocs: 0, skippedLines: stats.skippedLines },
    ];
    man.splits = {
      ...man.splits!,
      train: {
        docs: firstDoc + docs.length,
        tokens: startToken + newTokens,
        tokSha256: sha256File(staged(path.join(tokDir, "train.tok"))),
        docsSha256: sha256File(staged(path.join(tokDir, "train.docs"))),
      },
    };
    man.chunks = { count: total, padded: man.chunks!.padded + padded };
    close();
    writeJsonAtomic(path.join(dir, JOURNAL), { renames, manifest: man } satisfies Journal);
    if (o.stopAfter === "journal") return report();
    recoverUpdate(dir, { commit: true });
    return report();

    function report(): AddReport {
      return {
        dataset: spec.name,
        documents: docs.length,
        tokens: newTokens,
        chunks: added,
        totalChunks: total,
        seconds: (performance.now() - t0) / 1000,
      };
    }
  } finally {
    close();
  }
}

/** Embeddings [added, dim] of chunks n0 … total−1 with the database's fitted embedder. */
async function embedNew(db: Database, n0: number, total: number, text: (id: number) => string): Promise<Float32Array> {
  const emb = await openDbEmbedder(db);
  const texts: string[] = [];
  for (let c = n0; c < total; c++) texts.push(text(c));
  return emb.embed(texts);
}
