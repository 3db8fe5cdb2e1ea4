/**
 * Instruction and QA sets over the knowledge corpus (src/data/people.ts), with their evidence in a database:
 *
 *   train-qa.json     questions about group A in tuning forms (Megatron QA JSON), each with passages retrieved
 *                     from the database for its question (src/prompt/passages.ts, the function `eval qa` uses):
 *                     the person's best passage and the best passage about someone else, as a database with
 *                     one biography per person gives them; in a seeded 30 % the other person's comes first,
 *                     so that the answer must be found by the name, not by the rank;
 *   train-chat.jsonl  the same kind of question as a chat whose user turn holds the passages and the question
 *                     (the form `retro serve` gives a chat in passage mode), the answer alone as the reply;
 *   qa-b.jsonl        questions about B (only in the database) in the forms held out of tuning;
 *   qa-c.jsonl        the same about C (in no database until the knowledge update);
 *   README.md         the construction and counts, with how often the top-k passages hold the answer.
 * No name or fact of B or C enters a tuning file (they are about A alone; tested).
 */
import * as path from "node:path";
import type { Database } from "../db/database.ts";
import type { Retriever } from "../db/retriever.ts";
import { evalQuestions, tuningQuestions, type PeopleCorpus, type PeopleQuestion } from "../data/people.ts";
import {
  passageBudget,
  passagesHold,
  questionTokens,
  retrievePassages,
  type RetrievedPassage,
} from "../prompt/passages.ts";
import { formatPassages, type Passage } from "../prompt/format.ts";
import { Rng } from "../util/rng.ts";
import { claimOutputFolder, writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";
import { SFT_DATA_FOLDER } from "./bundled.ts";

export interface KnowledgeCounts {
  train: { qa: number; chat: number };
  heldOut: { b: number; c: number };
  /** share of B's questions whose top-k retrieved passages hold the answer (normalised, whole words) */
  recallB: number;
  /** share of the tuning questions whose passages hold the answer */
  recallTrain: number;
  topK: number;
}

/**
 * Passages for each question of `qs`, within the room a prompt of `seq` positions leaves after the question and
 * `maxTokens` of answer.
 */
export async function passagesFor(
  retriever: Retriever,
  qs: { question: string }[],
  o: {
    topK: number;
    seq: number;
    maxTokens: number;
    system: string | null;
    /** passages to return (candidates to choose `topK` from), each still sized for a prompt of `topK` */
    candidates?: number;
  },
): Promise<RetrievedPassage[][]> {
  const out: RetrievedPassage[][] = [];
  const tok = retriever.db.tokenizer,
    room = o.seq - o.maxTokens;
  for (let i = 0; i < qs.length; i += 512) {
    const part = qs.slice(i, i + 512);
    out.push(
      ...(await retrievePassages(
        retriever,
        part.map((q) => q.question),
        {
          topK: o.candidates ?? o.topK,
          maxTokens: (j) =>
            passageBudget(room, questionTokens(tok, part[j].question, o.system), o.topK, retriever.db.m),
        },
      )),
    );
  }
  return out;
}

export async function buildKnowledgeSets(
  _db: Database,
  retriever: Retriever,
  corpus: PeopleCorpus,
  out: string,
  o: {
    seq: number;
    maxTokens: number;
    topK?: number;
    maxTrain?: number;
    system: string | null;
    /** datasets whose documents never enter the tuning passages (the people evaluated, and any others kept apart) */
    exclude?: readonly string[];
  },
): Promise<KnowledgeCounts> {
  const topK = o.topK ?? 2,
    seed = corpus.options.seed;
  claimOutputFolder(out, SFT_DATA_FOLDER);
  const byId = new Map(corpus.people.map((p) => [p.id, p]));
  const train = tuningQuestions(corpus).slice(0, o.maxTrain ?? 12000);
  // the person's best passage and the best one about someone else, from 6 candidates, each the size it has in a
  // prompt of `topK` passages (what evaluation shows: sized for 6, they were fragments that held the answer for
  // 42 % of the questions, and the tuned model learned to answer from memory)
  const apart = new Set(o.exclude ?? []);
  const wide = (
    await passagesFor(retriever, train, {
      topK,
      candidates: topK + 4,
      seq: o.seq,
      maxTokens: o.maxTokens,
      system: o.system,
    })
  ).map((ps) => ps.filter((p) => !apart.has(p.dataset)));
  const rng = new Rng(seed + 11);
  let holds = 0;
  const chosen = train.map((q, i) => {
    const who = byId.get(q.person)!,
      about = (p: Passage) => p.text.includes(who.last);
    // the gold passage: the person's best one that holds the answer (an A person's training document is longer
    // than a passage, and its window may show other facts) — a tuned model learns to read only where reading pays
    const mine = wide[i].find((p) => about(p) && passagesHold([p], q.answers)) ?? wide[i].find(about),
      other = wide[i].filter((p) => !about(p)).slice(0, topK - 1);
    const ps = mine ? [mine, ...other] : wide[i].slice(0, topK);
    if (mine && ps.length > 1 && rng.next() < 0.3) ps.reverse();
    if (passagesHold(ps.slice(0, topK), q.answers)) holds++;
    return ps.slice(0, topK).map((p) => ({ title: p.title, text: p.text }));
  });
  const half = Math.floor(train.length * 0.8);
  writeJsonAtomic(
    path.join(out, "train-qa.json"),
    train.slice(0, half).map((q, i) => ({ id: q.id, question: q.question, answers: q.answers, ctxs: chosen[i] })),
  );
  const chats = train.slice(half).map((q, j) =>
    JSON.stringify({
      messages: [
        { role: "user", content: `${formatPassages(chosen[half + j])}\n\n${q.question}` },
        { role: "assistant", content: q.answers[0] },
      ],
    }),
  );
  writeFileAtomic(path.join(out, "train-chat.jsonl"), chats.join("\n") + "\n");
  const write = (file: string, qs: PeopleQuestion[]) =>
    writeFileAtomic(
      path.join(out, file),
      qs.map((q) => JSON.stringify({ id: q.id, question: q.question, answers: q.answers })).join("\n") + "\n",
    );
  const qb = evalQuestions(corpus, "B"),
    qc = evalQuestions(corpus, "C");
  write("qa-b.jsonl", qb);
  write("qa-c.jsonl", qc);
  const pb = await passagesFor(retriever, qb, { topK, seq: o.seq, maxTokens: o.maxTokens, system: o.system });
  const recallB = qb.filter((q, i) => passagesHold(pb[i], q.answers)).length / Math.max(1, qb.length);
  const counts: KnowledgeCounts = {
    train: { qa: half, chat: chats.length },
    heldOut: { b: qb.length, c: qc.length },
    recallB,
    recallTrain: holds / Math.max(1, train.length),
    topK,
  };
  writeFileAtomic(
    path.join(out, "README.md"),
    [
      "# Knowledge instruction and QA sets (labelled synthetic: fictional people)",
      "",
      "Built by src/sft/knowledge.ts over the people corpus (src/data/people.ts) and the database's retriever.",
      "",
      `- train-qa.json: ${counts.train.qa} questions about group A (tuning forms), each with ${topK} passages ` +
        `retrieved from the database (they hold the answer for ${(100 * counts.recallTrain).toFixed(1)} %)`,
      `- train-chat.jsonl: ${counts.train.chat} chats: passages and question in the user turn, the answer as the reply`,
      `- qa-b.jsonl: ${qb.length} questions about group B (in the database only), in forms held out of tuning; the ` +
        `top-${topK} retrieved passages hold the answer for ${(100 * recallB).toFixed(1)} %`,
      `- qa-c.jsonl: ${qc.length} questions about group C (in no database until \`retro db add\`)`,
      "",
    ].join("\n"),
  );
  return counts;
}
