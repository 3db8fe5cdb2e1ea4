/**
 * Which embedder retrieves better neighbours on the bundled corpus?
 *
 * For every chunk j of every held-out (valid) sample that has a next chunk, retrieve the top-2 DB
 * chunks by exact search over the embeddings of each candidate embedder, and measure what Retro
 * can use: the share of the NEXT chunk's word n-grams that do not occur in the sample so far but
 * do occur in the retrieved neighbours (chunk + continuation, r = 2m). Baseline: 2 random chunks.
 * Also BM25 over the chunks' words (the sparse retriever of `"index": {"description": "BM25"}`) and the
 * database's own fitted embedder. LEX= and LSA= (empty) skip the embedders fitted here.
 * Usage: node --import tsx experiments/embedder-quality.ts [--db runs/default-db] [--queries 1000]
 */
import { parseArgs } from "node:util";
import { Database } from "../src/db/database.ts";
import { AnnIndex } from "../src/search/usearch.ts";
import { fitIdf, LexicalEmbedder } from "../src/embed/lexical.ts";
import type { Embedder } from "../src/embed/embedder.ts";
import { Rng } from "../src/util/rng.ts";
import { fitLsa, LsaEmbedder } from "../src/embed/lsa.ts";
import { table } from "../bench/common.ts";
import { Bm25Index } from "../src/search/bm25.ts";
import { openDbEmbedder } from "../src/db/retriever.ts";

const { values: a } = parseArgs({
  options: { db: { type: "string", default: "runs/default-db" }, queries: { type: "string", default: "1000" } },
});
const db = new Database(a.db!);
const m = db.m,
  seq = db.config.query.seq,
  l = seq / m;
const words = (s: string) => s.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
const grams = (w: string[], n: number) => {
  const out = new Set<string>();
  for (let i = 0; i + n <= w.length; i++) out.add(w.slice(i, i + n).join(" "));
  return out;
};

// queries: (sample, chunk) pairs of the valid split with a next chunk
const nSamples = Math.floor((db.valid.nTokens - 1) / seq);
const pairs: [number, number][] = [];
for (let i = 0; i < nSamples; i++) for (let j = 0; j + 1 < l; j++) pairs.push([i, j]);
const rng = new Rng(3);
const chosen = rng.sample(pairs.length, Math.min(pairs.length, Number(a.queries))).map((p) => pairs[p]);
const dec = (t: Uint32Array) => db.tokenizer.decode(t.filter((x) => x !== db.tokenizer.eod));
const Q = chosen.map(([i, j]) => {
  const base = i * seq;
  return {
    query: dec(db.valid.read(base + j * m, base + (j + 1) * m)),
    context: words(dec(db.valid.read(base, base + (j + 1) * m))),
    next: words(dec(db.valid.read(base + (j + 1) * m, base + (j + 2) * m))),
  };
});
const chunkTexts = Array.from({ length: db.nChunks }, (_, c) => db.chunkText(c));
const nbrWords = new Map<number, string[]>();
const nbrOf = (c: number) => {
  let w = nbrWords.get(c);
  if (!w) nbrWords.set(c, (w = words(dec(db.neighbourTokens(c)))));
  return w;
};

function score(neigh: (q: number) => number[]) {
  const res: Record<string, number> = {};
  for (const n of [1, 2, 4]) {
    let hit = 0,
      tot = 0;
    Q.forEach((q, qi) => {
      const ctx = grams(q.context, n);
      const target = [...grams(q.next, n)].filter((g) => !ctx.has(g));
      const got = new Set<string>();
      for (const c of neigh(qi)) for (const g of grams(nbrOf(c), n)) got.add(g);
      tot += target.length;
      hit += target.filter((g) => got.has(g)).length;
    });
    res[`new_${n}gram_recall_%`] = +((100 * hit) / Math.max(tot, 1)).toFixed(2);
  }
  return res;
}

async function evalEmbedder(name: string, emb: Embedder) {
  const t0 = Date.now();
  const idx = new AnnIndex("Flat", emb.dim, 0, 0, 2);
  for (let s = 0; s < db.nChunks; s += 8192) idx.add(await emb.embed(chunkTexts.slice(s, s + 8192)), s);
  const r = idx.search(await emb.embed(Q.map((q) => q.query)), 2);
  return {
    embedder: name,
    dim: emb.dim,
    ...score((qi) => [r.ids[2 * qi], r.ids[2 * qi + 1]].filter((x) => x >= 0)),
    seconds: ((Date.now() - t0) / 1000).toFixed(1),
  };
}

const sample = new Rng(db.config.seed).sample(db.nChunks, Math.min(db.nChunks, 50_000)).map((c) => chunkTexts[c]);
const rows: Record<string, string | number>[] = [];
rows.push({
  embedder: "random chunks",
  dim: 0,
  ...score(() => [rng.int(db.nChunks), rng.int(db.nChunks)]),
  seconds: "0",
});
{
  const t0 = Date.now();
  const idx = Bm25Index.build(db.nChunks, (c) => chunkTexts[c]);
  const r = idx.search(
    Q.map((q) => q.query),
    2,
  );
  rows.push({
    embedder: "BM25 (words, k1 1.2, b 0.75)",
    dim: 0,
    ...score((qi) => [r.ids[2 * qi], r.ids[2 * qi + 1]].filter((x) => x >= 0)),
    seconds: ((Date.now() - t0) / 1000).toFixed(1),
  });
}
if (db.manifest.embeddings?.dim)
  rows.push(
    await evalEmbedder(`the database's embedder (${db.manifest.embeddings.embedderId})`, await openDbEmbedder(db)),
  );
console.log(table(rows));
for (const [dim, ng] of (process.env.LEX ?? "256:2,256:1,1024:2,1024:1")
  .split(",")
  .filter(Boolean)
  .map((x) => x.split(":").map(Number))) {
  rows.push(
    await evalEmbedder(
      `lexical tf-idf ${ng === 2 ? "uni+bigram" : "unigram"}`,
      new LexicalEmbedder(dim, fitIdf(sample, ng), ng),
    ),
  );
  console.log(table(rows));
}
for (const [dim, nfit, iters] of (process.env.LSA ?? "128:50000:2,256:50000:2,256:20000:1")
  .split(",")
  .filter(Boolean)
  .map((x) => x.split(":").map(Number))) {
  const t0 = Date.now();
  const st = fitLsa(sample.slice(0, nfit), dim, { powerIters: iters });
  console.log(
    `LSA ${dim} on ${nfit} chunks, ${iters} power iterations: fitted in ${((Date.now() - t0) / 1000).toFixed(1)} s ` +
      `(vocab ${st.vocab.length})`,
  );
  rows.push(await evalEmbedder(`LSA fit ${nfit}/${iters} it`, new LsaEmbedder(st)));
  console.log(table(rows));
}
console.log(`${Q.length} held-out queries, top-2 neighbours (chunk + continuation), exact search`);
console.log(table(rows));
