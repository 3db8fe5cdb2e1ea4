import { test, describe, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase, sampleDocKeys, samplesIn } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { AnnIndex } from "../../src/search/usearch.ts";
import { readBlock, blockName } from "../../src/util/blockfile.ts";
import type { RetroError } from "../../src/util/errors.ts";
import { smallConfig, tmpDir, writeTextCorpus, treeHashes } from "../helpers.ts";

process.env.RETRO_QUIET = "1";

describe("database build on a small real-text corpus", () => {
  let corpus: string, dir: string, db: Database;
  before(async () => {
    corpus = writeTextCorpus(path.join(tmpDir(), "corpus"));
    dir = path.join(tmpDir(), "db");
    await buildDatabase(dir, smallConfig(corpus));
    db = new Database(dir);
  });

  test("chunks cover every training document exactly and decode back to its text", () => {
    const m = db.m;
    for (let d = 0; d < db.train.nDocs; d++) {
      const start = db.train.docStart(d),
        len = db.train.docLength(d);
      const fromChunks: number[] = [];
      for (let c = 0; c < db.nChunks; c++)
        if (db.chunkDoc(c) === d) fromChunks.push(...db.chunkTokens(c).subarray(0, db.chunks[4 * c + 3]));
      assert.deepEqual(fromChunks, Array.from(db.train.read(start, start + len)));
      const file = fs.readdirSync(corpus).sort()[db.train.docOrdinal(d)];
      assert.equal(db.tokenizer.decode(fromChunks), fs.readFileSync(path.join(corpus, file), "utf8").trim());
    }
    // a short last chunk is padded with EOD up to the chunk length
    const short = Array.from({ length: db.nChunks }, (_, c) => c).find((c) => db.chunks[4 * c + 3] < m)!;
    const toks = db.chunkTokens(short);
    assert.equal(toks.length, m);
    assert.equal(toks[m - 1], db.tokenizer.eod);
  });

  test("held-out documents never enter the database", () => {
    assert.ok(db.valid.nDocs >= 1, "the split holds at least one document");
    const trainKeys = new Set<number>();
    for (let c = 0; c < db.nChunks; c++) trainKeys.add(db.train.docOrdinal(db.chunkDoc(c)));
    const chunkTexts = new Set(Array.from({ length: db.nChunks }, (_, c) => db.chunkText(c)));
    for (let d = 0; d < db.valid.nDocs; d++) {
      assert.ok(!trainKeys.has(db.valid.docOrdinal(d)));
      const s = db.valid.docStart(d);
      const firstChunk = db.tokenizer.decode(db.valid.read(s, s + db.m));
      assert.ok(!chunkTexts.has(firstChunk), "a held-out chunk's text is in the database");
    }
  });

  test("no neighbour comes from any document of the sample (exclusion rule); −1 only as trailing padding", async () => {
    for (const split of ["train", "valid"]) {
      const n = samplesIn(db, split, 64);
      assert.ok(n > 0);
      let real = 0;
      for (let i = 0; i < n; i++) {
        const excluded = sampleDocKeys(db, split, i, 64);
        const nb = db.sampleNeighbours(split, i);
        for (let j = 0; j < nb.length; j++) {
          const id = nb[j];
          if (id < 0) {
            // padding is trailing within its row of `keep`
            for (let t = j; t < j + (4 - (j % 4)); t++) assert.equal(nb[t], -1);
            continue;
          }
          real++;
          const doc = db.chunkDoc(id);
          assert.ok(
            !excluded.has(db.train.docDataset(doc) * 2 ** 32 + db.train.docOrdinal(doc)),
            `sample ${i} got a neighbour from its own document`,
          );
        }
      }
      assert.ok(real > 0);
    }
    // the rule is not vacuous: an unfiltered search of a train sample does hit its own documents
    const idx = await db.openIndex();
    const c0 = 0;
    const own = (
      await idx.search(
        { texts: [], vectors: readBlock(blockName(path.join(dir, "embed"), 0, 100), Float32Array).data.slice(0, 64) },
        1,
      )
    ).ids[0];
    assert.equal(own, c0);
  });

  test("the continuation never crosses a document boundary", () => {
    let lastChunks = 0;
    for (let c = 0; c < db.nChunks; c++) {
      const t = db.neighbourTokens(c);
      assert.equal(t.length, 2 * db.m);
      assert.deepEqual(Array.from(t.subarray(0, db.m)), Array.from(db.chunkTokens(c)));
      if (c + 1 < db.nChunks && db.chunkDoc(c + 1) === db.chunkDoc(c))
        assert.deepEqual(Array.from(t.subarray(db.m)), Array.from(db.chunkTokens(c + 1)));
      else {
        lastChunks++;
        assert.ok(
          t.subarray(db.m).every((x) => x === db.tokenizer.eod),
          `chunk ${c}: continuation leaks into the next document`,
        );
      }
    }
    assert.equal(lastChunks, db.train.nDocs);
    assert.ok(
      db.neighbourTokens(-1).every((x) => x === db.tokenizer.eod),
      "a −1 neighbour is all EOD, never a real chunk",
    );
  });

  test("a sample's retrieved tokens [l, k, r] are its neighbours' chunks and continuations, in order", () => {
    const k = 2,
      r = 32,
      l = 64 / 16;
    const got = db.sampleRetrieved("valid", 0, k, r);
    assert.equal(got.length, l * k * r);
    const nb = db.sampleNeighbours("valid", 0);
    for (let j = 0; j < l; j++)
      for (let t = 0; t < k; t++)
        assert.deepEqual(
          Array.from(got.subarray((j * k + t) * r, (j * k + t + 1) * r)),
          Array.from(db.neighbourTokens(nb[j * 4 + t], r)),
        );
    assert.throws(() => db.sampleRetrieved("valid", 0, 5), /k = 5 neighbours asked, the database kept 4/);
  });

  test("HNSW recall@10 against exact search ≥ 0.9", async () => {
    const dim = db.manifest.embeddings!.dim;
    const all: Float32Array[] = [];
    for (let s = 0; s < db.nChunks; s += 100)
      all.push(readBlock(blockName(path.join(dir, "embed"), s, Math.min(db.nChunks, s + 100)), Float32Array).data);
    const vecs = new Float32Array(db.nChunks * dim);
    let o = 0;
    for (const a of all) vecs.set(a, o), (o += a.length);
    const flat = new AnnIndex("Flat", dim);
    flat.add(vecs, 0);
    const q = vecs.subarray(0, 50 * dim);
    const gt = flat.search(q, 10),
      got = await (await db.openIndex()).search({ texts: [], vectors: q }, 10);
    let hit = 0;
    for (let i = 0; i < 50; i++) {
      const g = new Set(gt.ids.subarray(i * 10, i * 10 + 10));
      for (let j = 0; j < 10; j++) if (g.has(got.ids[i * 10 + j])) hit++;
    }
    assert.ok(hit / 500 >= 0.9, `recall@10 = ${hit / 500}`);
    // exact search finds each vector itself first
    for (let i = 0; i < 50; i++) assert.equal(gt.ids[i * 10], i);
  });

  test("a database made with another tokenizer or chunk length is refused", () => {
    assert.throws(
      () => db.checkCompatible("gpt2", 16),
      (e: RetroError) => e.code === 6 && /tokenizer/.test(e.message),
    );
    assert.throws(
      () => db.checkCompatible(db.tokenizer.id, 64),
      (e: RetroError) => e.code === 6 && /chunk length/.test(e.message),
    );
    db.checkCompatible(db.tokenizer.id, 16);
  });

  test("re-running with a changed config is refused and names the keys", async () => {
    await assert.rejects(
      buildDatabase(dir, smallConfig(corpus, { chunkLength: 32 })),
      (e: RetroError) => e.code === 6 && /chunkLength/.test(e.message),
    );
  });

  test("resume: deleted, truncated and corrupted blocks are recomputed byte-identically", async () => {
    const before = treeHashes(dir);
    const emb = fs.readdirSync(path.join(dir, "embed")).filter((f) => f.endsWith(".blk") && !f.startsWith("lexical"));
    const nbr = fs.readdirSync(path.join(dir, "neighbours", "train"));
    fs.rmSync(path.join(dir, "embed", emb[1]));
    fs.truncateSync(path.join(dir, "neighbours", "train", nbr[0]), 100);
    const f = path.join(dir, "neighbours", "train", nbr[1]);
    const buf = fs.readFileSync(f);
    buf[buf.length - 1] ^= 0xff;
    fs.writeFileSync(f, buf);
    assert.throws(() => readBlock(f, Int32Array), /checksum/);
    // the manifest says the stages are done: drop them so that the build re-checks the blocks
    const man = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
    delete man.embeddings, delete man.index, delete man.neighbours;
    fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(man, null, 2) + "\n");
    await buildDatabase(dir, smallConfig(corpus));
    const after = treeHashes(dir);
    delete before["manifest.json"], delete after["manifest.json"];
    for (const k of Object.keys(before)) if (!k.startsWith("index/")) assert.equal(after[k], before[k], k);
  });

  test("the BPE is learned from at most tokenizer.trainChars characters", async () => {
    const small = path.join(tmpDir(), "db");
    // a budget of 1 character lets only the first document in: a BPE fitted to one document compresses the corpus worse
    const man = await buildDatabase(
      small,
      smallConfig(corpus, { tokenizer: { kind: "bpe", vocabSize: 400, trainChars: 1 } }),
      { until: "tokens" },
    );
    assert.notEqual(man.tokenizer!.id, db.tokenizer.id);
    assert.ok(man.splits!.train.tokens > db.train.nTokens * 1.05, `${man.splits!.train.tokens} vs ${db.train.nTokens}`);
  });
});
