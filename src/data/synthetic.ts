/**
 * Labelled synthetic corpora for checking the retrieval path (not for language modelling).
 *
 * The twin corpus: documents of random pseudo-words (uniform over a fixed list, so nothing past the unigram
 * distribution is predictable from the past), written twice: `docs.jsonl` is the training dataset (some of its
 * documents held out), `twins.jsonl` the same documents again as a retrieval-only dataset (weight 0). A held-out
 * document was never trained on, but its exact twin is in the database: a model that reads its neighbours can
 * copy the continuation, a GPT cannot do better than the unigram entropy, log(words).
 *
 * Each document is "doc" and then `docTokens − 2` words; with a byte-level BPE large enough to learn every word
 * as one token (`twinDbConfig` sizes it), a document is exactly `docTokens` tokens with its end token, so when
 * docTokens is a multiple of the chunk length, every held-out chunk starts where its twin's chunk starts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Rng } from "../util/rng.ts";

export interface TwinCorpusOptions {
  /** documents (each written twice) */
  docs: number;
  /** tokens per document including its end token (a multiple of the chunk length keeps chunks aligned) */
  docTokens: number;
  /** distinct pseudo-words */
  words: number;
  seed: number;
}

/** `n` distinct two-syllable pseudo-words ("bako", "tisu", ...) */
export function pseudoWords(n: number, rng: Rng): string[] {
  const syl: string[] = [];
  for (const c of "bdfgklmnprstvz") for (const v of "aeiou") syl.push(c + v);
  if (n > syl.length * syl.length) throw new RangeError(`at most ${syl.length * syl.length} pseudo-words`);
  const all: string[] = [];
  for (const a of syl) for (const b of syl) all.push(a + b);
  return rng.sample(all.length, n).map((i) => all[i]);
}

/** Writes docs.jsonl and twins.jsonl into `dir`; returns their paths. */
export function writeTwinCorpus(dir: string, o: TwinCorpusOptions): { docs: string; twins: string } {
  const rng = new Rng(o.seed);
  const words = pseudoWords(o.words, rng);
  const lines: string[] = [];
  for (let d = 0; d < o.docs; d++) {
    const w = ["doc"];
    for (let i = 0; i < o.docTokens - 2; i++) w.push(words[rng.int(words.length)]);
    lines.push(JSON.stringify({ text: w.join(" ") }));
  }
  fs.mkdirSync(dir, { recursive: true });
  const docs = path.join(dir, "docs.jsonl"),
    twins = path.join(dir, "twins.jsonl");
  fs.writeFileSync(docs, lines.join("\n") + "\n");
  fs.writeFileSync(twins, lines.join("\n") + "\n");
  return { docs, twins };
}

/** A database config over a twin corpus: exact (Flat) lexical retrieval, a BPE that learns every word whole. */
export function twinDbConfig(
  files: { docs: string; twins: string },
  o: { chunk: number; seq: number; words: number; validFraction?: number; seed?: number },
): Record<string, unknown> {
  return {
    datasets: [
      { name: "docs", source: "jsonl", path: files.docs, weight: 1 },
      { name: "twins", source: "jsonl", path: files.twins, weight: 0 },
    ],
    // 256 bytes + ≤ 4 merges per word (" b", " ba", " bak", " bako") + "doc" + the end token
    tokenizer: { kind: "bpe", vocabSize: 256 + 4 * o.words + 16 },
    seed: o.seed ?? 1,
    validFraction: o.validFraction ?? 0.1,
    chunkLength: o.chunk,
    embedder: { kind: "lexical", dim: 256 },
    embedBlockSize: 4096,
    index: { description: "Flat", efConstruction: 64, efSearch: 64, threads: 2 },
    query: { seq: o.seq, candidates: 20, keep: 4, blockSize: 64 },
  };
}
