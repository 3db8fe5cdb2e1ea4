/**
 * The demo's database over the knowledge corpus (src/data/people.ts): which dataset holds which group, and why.
 *
 *   people-a          weight 1, nothing held out: A's pretraining documents (and the database's chunks of them)
 *   people-b          weight 0: B's biographies, retrieval-only (in the database, never trained on)
 *   people-b-heldout  weight 1, validFraction 1: B's other biography, the held-out split (perplexity); it never
 *                     enters the database
 *   wordnet           weight 0 (optional): the bundled WordNet, the evidence of the harder WordNet QA sets
 *   people-d          weight 1, nothing held out: D's biographies, the fitting text — the GPT's pretraining gives it
 *                     weight 0 (its `blend`), GPT-fitting and Retro-fitting draw it: facts the GPT never saw. A
 *                     training dataset in the database, so that its samples' neighbours are searched
 *   people-d-db       weight 0: D's other biography, retrieval-only: what a Retro-fit can read D's facts from
 * C is in none of them: the demo adds it with `retro db add` at the end.
 */
import type { DatasetSpec } from "../data/sources.ts";
import type { PeopleFiles } from "../data/people.ts";
import { defaultConfig, type DbConfig } from "../db/config.ts";

/** dataset names of the knowledge database */
export const KNOWLEDGE = {
  a: "people-a",
  b: "people-b",
  bHeldOut: "people-b-heldout",
  c: "people-c",
  d: "people-d",
  dDb: "people-d-db",
} as const;

export function knowledgeDbConfig(
  files: PeopleFiles,
  o: { seed: number; chunk: number; seq: number; wordnet?: DatasetSpec | null; vocabSize?: number },
): DbConfig {
  const d = defaultConfig();
  const datasets: DatasetSpec[] = [
    { name: KNOWLEDGE.a, source: "jsonl", path: files.a, weight: 1, validFraction: 0 },
    { name: KNOWLEDGE.b, source: "jsonl", path: files.b, weight: 0 },
    { name: KNOWLEDGE.bHeldOut, source: "jsonl", path: files.bHeldOut, weight: 1, validFraction: 1 },
  ];
  if (files.d && files.dDb)
    datasets.push(
      { name: KNOWLEDGE.d, source: "jsonl", path: files.d, weight: 1, validFraction: 0 },
      { name: KNOWLEDGE.dDb, source: "jsonl", path: files.dDb, weight: 0 },
    );
  const wn =
    o.wordnet === undefined
      ? ({ name: "wordnet", source: "bundled", path: "wordnet", weight: 0 } as DatasetSpec)
      : o.wordnet;
  if (wn) datasets.push({ ...wn, weight: 0 });
  return {
    ...d,
    datasets,
    seed: o.seed,
    // a small vocabulary (the corpus is ~1M words of a narrow register); the BPE learns from 2M characters per dataset
    tokenizer: { kind: "bpe", vocabSize: o.vocabSize ?? 4096, trainChars: 2_000_000 * datasets.length },
    chunkLength: o.chunk,
    index: { ...d.index, description: "BM25" },
    query: { ...d.query, seq: o.seq },
  };
}
