/**
 * `retro sft-data`: labelled synthetic instruction and QA sets built from the bundled WordNet, whose evidence is
 * in the database (only synsets of documents the database holds, never its held-out split).
 *
 * Each WordNet synset "lemma₁, lemma₂, … (pos): gloss; "example"" gives up to three questions:
 *   synonym — "Which word is a synonym of lemma₁?"       → the other lemmas   (short answer, EM/F1)
 *   word    — "Which word means: <definition>?"         → the lemmas         (short answer, EM/F1)
 *   define  — "What does lemma₁ mean?"                   → the definition     (long-form, ROUGE)
 * (definition = the gloss before its first ";", examples dropped). Synsets are split by a hash of their
 * text: 10 % held out, and no held-out synset's lemma₁ or definition appears in any instruction question.
 * Written:
 *   train-qa.json      Megatron QA JSON (synonym + word + define), each with the top-2 chunks retrieved for its
 *                      question as ctxs (the database's index, or BM25 over its chunks) — the passages the
 *                      model will see at evaluation with the same retriever;
 *   train-chat.jsonl   two-turn chats ("Give me a word for: …" / lemma₁ / "Another one?" / lemma₂): the loss on
 *                      the last turn only;
 *   qa-synonym.jsonl, qa-word.jsonl, qa-define.jsonl   held-out questions, plain JSONL {id, question,
 *                      answers}, no passages: `retro eval qa` retrieves them from the database;
 *   README.md          this construction and the counts, including how often the retrieved passages
 *                      contain the answer (the ceiling of retrieval-augmented answering here).
 */
import * as path from "node:path";
import { openSource } from "../data/sources.ts";
import { isHeldOut } from "../db/build.ts";
import type { Database } from "../db/database.ts";
import { Retriever } from "../db/retriever.ts";
import { hashUniform } from "../util/rng.ts";
import { claimOutputFolder, writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";

/** What `retro sft-data` writes into its --out folder (bundled and knowledge sets alike), for claimOutputFolder. */
export const SFT_DATA_FOLDER = {
  marker: ".retro-sft-data",
  command: "retro sft-data",
  writes: ["README.md", "qa-synonym.jsonl", "qa-word.jsonl", "qa-define.jsonl", "qa-b.jsonl", "qa-c.jsonl"],
  legacy: ["train-qa.json", "train-chat.jsonl"],
};
import { RetroError } from "../util/errors.ts";
import { log } from "../util/progress.ts";
import { passagesHold } from "../prompt/passages.ts";

export interface Synset {
  key: string;
  lemmas: string[];
  pos: string;
  definition: string;
}

/** The synsets of one WordNet document of the database ("lemma, lemma (pos): gloss" per line). */
export function synsetsOfDoc(key: string, text: string): Synset[] {
  const out: Synset[] = [];
  text.split("\n").forEach((line, li) => {
    const m = /^(.*) \((noun|verb|adj|adv)\): (.*)$/.exec(line);
    if (!m) return;
    const lemmas = [
      ...new Set(
        m[1]
          .split(", ")
          .map((s) => s.trim())
          .filter(Boolean),
      ),
    ];
    const definition = m[3].split(";")[0].replace(/"/g, "").trim();
    if (!lemmas.length || definition.length < 8) return;
    out.push({ key: `${key}.${li}:${lemmas[0]}`, lemmas, pos: m[2], definition });
  });
  return out;
}

/** The synsets of the bundled WordNet whose documents the database holds (for training and retrieval). */
export async function wordnetSynsets(db: Database): Promise<Synset[]> {
  // the bundled WordNet, or any dataset named "wordnet" whose documents have WordNet's line format
  const ds =
    db.config.datasets.find((d) => d.source === "bundled" && d.path === "wordnet") ??
    db.config.datasets.find((d) => d.name === "wordnet");
  if (!ds)
    throw new RetroError("badInput", `${db.dir}: the database has no wordnet dataset (the evidence of these sets)`);
  const out: Synset[] = [];
  for await (const doc of openSource(ds, { skippedLines: 0 })) {
    if (isHeldOut(db.config.seed, ds, doc.key, db.config.validFraction)) continue; // never in the database
    out.push(...synsetsOfDoc(doc.key, doc.text));
  }
  return out;
}

export interface SetQuestion {
  id: string;
  task: "synonym" | "word" | "define";
  question: string;
  answers: string[];
}

/**
 * Split synsets into instruction and held-out questions: a synset is held out when hash(seed, key) < frac;
 * instruction synsets whose first lemma or definition is a held-out one's are dropped, so that no held-out
 * question is asked (or answered) in the instruction data. Both lists in a seeded order.
 */
export function splitQuestions(
  synsets: Synset[],
  seed: number,
  frac: number,
): { train: SetQuestion[]; heldOut: SetQuestion[]; trainSynsets: Synset[] } {
  const held: Synset[] = [],
    train: Synset[] = [];
  for (const s of synsets) (hashUniform(seed, s.key) < frac ? held : train).push(s);
  const heldWords = new Set(held.map((s) => s.lemmas[0].toLowerCase())),
    heldDefs = new Set(held.map((s) => s.definition));
  const clean = train.filter((s) => !heldWords.has(s.lemmas[0].toLowerCase()) && !heldDefs.has(s.definition));
  const order = (l: Synset[], salt: string) =>
    l
      .map((s) => ({ s, h: hashUniform(seed, salt + s.key) }))
      .sort((a, b) => a.h - b.h)
      .map((x) => x.s);
  const trainSynsets = order(clean, "t");
  return { train: trainSynsets.flatMap(questions), heldOut: order(held, "h").flatMap(questions), trainSynsets };
}

function questions(s: Synset): SetQuestion[] {
  const q: SetQuestion[] = [];
  const id = s.key.replace(/\s+/g, "_");
  if (s.lemmas.length >= 2)
    q.push({
      id: `syn:${id}`,
      task: "synonym",
      question: `Which word is a synonym of ${s.lemmas[0]}?`,
      answers: s.lemmas.slice(1),
    });
  q.push({ id: `word:${id}`, task: "word", question: `Which word means: ${s.definition}?`, answers: s.lemmas });
  q.push({ id: `def:${id}`, task: "define", question: `What does ${s.lemmas[0]} mean?`, answers: [s.definition] });
  return q;
}

export interface BundledCounts {
  synsets: number;
  train: { qa: number; chat: number };
  heldOut: Record<string, number>;
  /** share of questions whose top-k retrieved passages contain a gold answer (normalised substring) */
  recall: Record<string, number>;
}

export async function buildBundledSets(
  db: Database,
  out: string,
  o: {
    seed?: number;
    heldOut?: number;
    maxTrain?: number;
    maxHeldOut?: number;
    topK?: number;
    retriever?: "index" | "bm25";
  } = {},
): Promise<BundledCounts> {
  const seed = o.seed ?? 7,
    frac = o.heldOut ?? 0.1,
    maxTrain = o.maxTrain ?? 6000,
    maxHeld = o.maxHeldOut ?? 200,
    topK = o.topK ?? 2;
  claimOutputFolder(out, SFT_DATA_FOLDER); // before any work: a folder that is not ours is refused at once
  const synsets = await wordnetSynsets(db);
  const split = splitQuestions(synsets, seed, frac);
  const trainQ = split.train.slice(0, maxTrain),
    heldQ = split.heldOut;
  const retriever = o.retriever === "bm25" ? await Retriever.bm25(db) : await Retriever.open(db);
  const passages = async (qs: SetQuestion[]) => {
    const res: { title: string; text: string }[][] = [];
    for (let i = 0; i < qs.length; i += 512) {
      const part = qs.slice(i, i + 512);
      const r = await retriever.search(
        part.map((q) => q.question),
        { keep: topK },
      );
      part.forEach((_, j) => {
        const ps: { title: string; text: string }[] = [];
        for (let t = 0; t < topK; t++) {
          const id = r.ids[j * topK + t];
          if (id >= 0) ps.push({ title: `wordnet`, text: db.chunkText(id).trim() });
        }
        res.push(ps);
      });
    }
    return res;
  };
  const trainPs = await passages(trainQ);
  writeJsonAtomic(
    path.join(out, "train-qa.json"),
    trainQ.map((q, i) => ({ id: q.id, question: q.question, answers: q.answers, ctxs: trainPs[i] })),
  );
  const chats = split.trainSynsets
    .filter((s) => s.lemmas.length >= 2)
    .slice(0, Math.floor(maxTrain / 4))
    .map((s) =>
      JSON.stringify({
        messages: [
          { role: "user", content: `Give me a word for: ${s.definition}.` },
          { role: "assistant", content: s.lemmas[0] },
          { role: "user", content: "Another one?" },
          { role: "assistant", content: s.lemmas[1] },
        ],
      }),
    );
  writeFileAtomic(path.join(out, "train-chat.jsonl"), chats.join("\n") + "\n");
  const recall: Record<string, number> = {},
    heldOut: Record<string, number> = {};
  for (const task of ["synonym", "word", "define"] as const) {
    const qs = heldQ.filter((q) => q.task === task).slice(0, maxHeld);
    writeFileAtomic(
      path.join(out, `qa-${task}.jsonl`),
      qs.map((q) => JSON.stringify({ id: q.id, question: q.question, answers: q.answers })).join("\n") + "\n",
    );
    heldOut[task] = qs.length;
    if (task !== "define") {
      const ps = await passages(qs);
      recall[task] = qs.filter((q, i) => passagesHold(ps[i], q.answers)).length / Math.max(1, qs.length);
    }
  }
  const counts: BundledCounts = {
    synsets: synsets.length,
    train: { qa: trainQ.length, chat: chats.length },
    heldOut,
    recall,
  };
  writeFileAtomic(
    path.join(out, "README.md"),
    [
      "# Bundled instruction and QA sets (labelled synthetic, from WordNet)",
      "",
      `Built by \`retro sft-data --db ${db.dir} --out ${out}${o.retriever === "bm25" ? " --retriever bm25" : ""}\` ` +
        `(src/sft/bundled.ts, which documents the construction).`,
      `${counts.synsets} synsets of database documents; ${frac * 100} % held out by a hash of the synset (seed ` +
        `${seed}).`,
      "",
      `- train-qa.json: ${counts.train.qa} questions (synonym, word-for-definition, definition) with the database's ` +
        `top-${topK} chunks as ctxs`,
      `- train-chat.jsonl: ${counts.train.chat} two-turn chats, the loss on the last answer`,
      ...Object.entries(heldOut).map(
        ([t, n]) =>
          `- qa-${t}.jsonl: ${n} held-out questions` +
          (recall[t] !== undefined
            ? `; the top-${topK} retrieved chunks contain a gold answer for ${(100 * recall[t]).toFixed(1)} %`
            : " (long-form: ROUGE)"),
      ),
      "",
    ].join("\n"),
  );
  log(`sft-data: ${JSON.stringify(counts)}`);
  return counts;
}
