/**
 * Instruction data: conversations read from chat JSONL ({"messages": [{"role", "content"}, …]} per line, the
 * shape of public instruction sets) or from any QA file of src/prompt/qa-formats.ts (Megatron's QA JSON, SQuAD, …:
 * each question with its passages becomes one conversation in the QA template, answer = the first gold answer),
 * then tokenized to fit the model: prompt + answer + end-of-document, the loss on the answer and its end token.
 */
import { RetroError } from "../util/errors.ts";
import { jsonLines } from "../util/jsonl.ts";
import { readTextFile } from "../util/fsx.ts";
import { warn } from "../util/progress.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { readQaFile } from "../prompt/qa-formats.ts";
import { chatPrompt, encodePrompt, qaPrompt, type Message, type PromptParts } from "../prompt/format.ts";

export interface Conversation {
  /** file:line or file item, for messages */
  where: string;
  parts: PromptParts;
  /** the last assistant turn, with its leading space */
  answer: string;
}

const ROLES = new Set(["system", "user", "assistant"]);

function isChatFile(text: string): boolean {
  const first = text.split("\n").find((l) => l.trim());
  if (!first) return false;
  try {
    const r = JSON.parse(first) as Record<string, unknown>;
    return r !== null && typeof r === "object" && "messages" in r;
  } catch {
    return false;
  }
}

/** The conversations of one file (chat JSONL or a QA file); malformed lines are errors naming file:line. */
export function readConversations(file: string, system: string | null): Conversation[] {
  const text = readTextFile(file, "instruction data");
  if (!isChatFile(text)) {
    return checkAnswers(
      file,
      readQaFile(file).items.map((q) => {
        const ans = q.answers[0].trim();
        return {
          where: `${file} ${q.id}`,
          parts: qaPrompt(q.question, q.passages, system),
          answer: ans ? " " + ans : "",
        };
      }),
    );
  }
  const out: Conversation[] = [];
  jsonLines(text, file).forEach(({ line, value: rec }) => {
    const where = `${file}:${line}`;
    if (rec === null || typeof rec !== "object" || Array.isArray(rec))
      throw new RetroError("badInput", `${where}: expected a JSON object {"messages": […]}`);
    const msgs = (rec as { messages?: unknown }).messages;
    if (!Array.isArray(msgs) || !msgs.length)
      throw new RetroError("badInput", `${where}: "messages" must be a non-empty list`);
    msgs.forEach((m, j) => {
      const mm = m as Record<string, unknown>;
      if (!mm || !ROLES.has(mm.role as string))
        throw new RetroError("badInput", `${where}: message ${j}: role must be system, user or assistant`);
      if (typeof mm.content !== "string")
        throw new RetroError("badInput", `${where}: message ${j}: "content" must be a string`);
      if (mm.role === "system" && j > 0)
        throw new RetroError("badInput", `${where}: message ${j}: a system message must come first`);
    });
    const m = msgs as Message[];
    if (m[m.length - 1].role !== "assistant")
      throw new RetroError("badInput", `${where}: the last message must be the assistant's (the turn the loss is on)`);
    if (!m.some((x) => x.role === "user")) throw new RetroError("badInput", `${where}: no user message`);
    out.push({ where, ...chatPrompt(m, system) });
  });
  if (!out.length) throw new RetroError("badInput", `${file}: no conversations`);
  return checkAnswers(file, out);
}

/**
 * The loss is on the answers: a file whose answers are all empty would teach only the end token (refused); some
 * empty answers are named in a warning (a SQuAD 2.0 file's unanswerable questions are such, on purpose).
 */
function checkAnswers(file: string, cs: Conversation[]): Conversation[] {
  const empty = cs.filter((c) => !c.answer.trim());
  if (empty.length === cs.length)
    throw new RetroError("badInput", `${file}: every answer is empty (${cs.length} conversations): nothing to learn`);
  if (empty.length)
    warn(
      `${file}: ${empty.length} of ${cs.length} answers are empty (first: ${empty[0].where}); they teach the end token`,
    );
  return cs;
}

export interface TokenizedExample {
  /** prompt, answer and end-of-document tokens */
  ids: Int32Array;
  /** index of the first answer token */
  answerStart: number;
  /** prompt tokens cut to fit */
  cut: number;
}

/**
 * One conversation as training tokens of at most seq + 1 (inputs and shifted targets): the answer and its end
 * token are kept (an answer longer than half the positions is cut at its end, losing the end token), the prompt
 * fills what remains.
 */
export function tokenizeExample(tok: Tokenizer, c: Conversation, seq: number): TokenizedExample {
  let ans = [...tok.encode(c.answer), tok.eod];
  const maxAns = Math.max(1, Math.floor(seq / 2));
  if (ans.length > maxAns) ans = ans.slice(0, maxAns);
  const p = encodePrompt(tok, c.parts, seq + 1 - ans.length);
  const ids = new Int32Array(p.ids.length + ans.length);
  ids.set(p.ids);
  ids.set(ans, p.ids.length);
  return { ids, answerStart: p.ids.length, cut: p.cut };
}
