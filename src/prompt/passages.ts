/**
 * Passages for a prompt, retrieved from the database by a question: the top chunks by the retriever, each
 * standing for its document (whole, or the window around the chunk that fits the passage's share of the
 * prompt), one passage per document, best first. Instruction data, `retro eval qa` and `retro serve` all put
 * passages into prompts through this one function, so that a model is tuned on the passages it will be shown.
 */
import type { Retriever } from "../db/retriever.ts";
import { chatContinuation, formatPassages, qaPrompt, type Message, type Passage } from "./format.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { normalizeAnswer } from "./answers.ts";

export interface RetrievedPassage extends Passage {
  /** the database chunk the passage was found by, its dataset and document (the citation) */
  chunk: number;
  dataset: string;
  document: number;
  score: number;
}

/**
 * Passage token budget: the prompt's `room` less the question's own tokens, shared by `topK` passages (never
 * below one chunk). Each passage's "title: …, source: " and separator come out of its share.
 */
export function passageBudget(room: number, questionTokens: number, topK: number, chunk: number): number {
  if (topK <= 0) return 0;
  return Math.max(chunk, Math.floor((room - questionTokens) / topK));
}

/**
 * A chat (ending with the user's turn) or a plain prompt, with the top-`topK` passages retrieved by its question
 * (the last user turn, or the prompt): chat puts them into the last user turn ("title: …, source: …" blocks,
 * then the question: the tuning template), a plain prompt gets them in front. The passages share the `room`
 * tokens left after the question (the model's positions less the tokens to generate).
 */
export async function promptWithPassages(
  retriever: Retriever | null,
  tok: Tokenizer,
  o: { messages?: Message[]; prompt?: string; system: string | null; topK: number; room: number },
): Promise<{ prompt: string; question: string; passages: RetrievedPassage[] }> {
  const messages = o.messages;
  const text = messages ? chatContinuation(messages, o.system) : (o.prompt ?? "");
  const question = messages ? messages[messages.length - 1].content : text;
  if (o.topK <= 0 || !retriever) return { prompt: text, question, passages: [] };
  const budget = passageBudget(o.room, tok.encode(text).length, o.topK, retriever.db.m);
  const [passages] = await retrievePassages(retriever, [question], { topK: o.topK, maxTokens: budget });
  if (!passages.length) return { prompt: text, question, passages };
  const block = formatPassages(passages) + "\n\n";
  const prompt = messages
    ? chatContinuation([...messages.slice(0, -1), { role: "user", content: block + question }], o.system)
    : block + text;
  return { prompt, question, passages };
}

/** The top `topK` passages (distinct documents) for each question, at most `maxTokens` tokens each. */
export async function retrievePassages(
  retriever: Retriever,
  questions: string[],
  o: { topK: number; maxTokens: number | ((q: number) => number) },
): Promise<RetrievedPassage[][]> {
  const db = retriever.db,
    topK = o.topK;
  if (topK <= 0 || questions.length === 0) return questions.map(() => []);
  // more chunks than passages: several of the best chunks may come from one document
  const keep = topK * 4;
  const res = await retriever.search(questions, { keep });
  return questions.map((_, q) => {
    const out: RetrievedPassage[] = [];
    const docs = new Set<number>();
    const budget = typeof o.maxTokens === "function" ? o.maxTokens(q) : o.maxTokens;
    for (let t = 0; t < keep && out.length < topK; t++) {
      const id = res.ids[q * keep + t];
      if (id < 0) break;
      const doc = db.chunkDoc(id);
      if (docs.has(doc)) continue;
      docs.add(doc);
      const cit = retriever.citation(id, res.scores[q * keep + t], db.m);
      const title = `${cit.dataset} ${cit.document}`;
      // the passage's own share less its "title: …, source: " and the blank line after it
      const text = Math.max(db.m, budget - db.tokenizer.encode(formatPassages([{ title, text: "" }]) + "\n\n").length);
      out.push({
        title,
        text: db.tokenizer.decode(db.passageTokens(id, text)).trim(),
        chunk: id,
        dataset: cit.dataset,
        document: cit.document,
        score: cit.score,
      });
    }
    return out;
  });
}

/** Does any passage hold one of the answers (SQuAD-normalised, as whole words)? The ceiling of reading them. */
export function passagesHold(ps: { text: string }[], answers: string[]): boolean {
  const hay = " " + normalizeAnswer(ps.map((p) => p.text).join(" ")) + " ";
  return answers.some((a) => normalizeAnswer(a) !== "" && hay.includes(" " + normalizeAnswer(a) + " "));
}

/** tokens of a question's prompt without passages (what the passages share the rest of the room with) */
export function questionTokens(tok: Tokenizer, question: string, system: string | null): number {
  const p = qaPrompt(question, [], system);
  return tok.encode(p.head).length + tok.encode(p.tail).length;
}
