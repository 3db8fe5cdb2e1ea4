/**
 * The conversational format of InstructRetro (paper, Appendix C): a system prompt, then `User:` / `Assistant:`
 * turns separated by blank lines. Instruction tuning and question answering share it:
 *
 *   System: <system prompt>\n\n
 *   User: <turn>\n\nAssistant: <turn>\n\n … User: <last user turn>\n\nAssistant:   ← the prompt
 *   " <last assistant turn>" + end-of-document                                         ← the answer (the loss)
 *
 * A question with passages (Megatron's QA template, paper Table 10) puts them in the user turn:
 *
 *   User: title: <t>, source: <passage>\n\n … <question> Answer the above question with a short phrase.\n\n
 *   Assistant: The answer is                                                          ← " <answer>" generated
 *
 * Prompts are built as parts (a head that is never cut, a middle that may be cut, a tail that is never cut)
 * so that a prompt longer than the model's positions loses passage text, never the question.
 */
import type { Tokenizer } from "../tokenizer/types.ts";
import { RetroError } from "../util/errors.ts";

/** The system prompt of the paper's instruction data (Appendix C.1). */
export const SYSTEM_PROMPT =
  "This is a chat between a user and an artificial intelligence assistant. The assistant gives helpful, detailed, " +
  "and polite answers to the user's questions based on the context. The assistant should also indicate when the " +
  "answer cannot be found in the context.";

export const QA_INSTRUCTION = "Answer the above question with a short phrase.";
export const QA_ANSWER_PREFIX = "The answer is";

export type Role = "system" | "user" | "assistant";
export interface Message {
  role: Role;
  content: string;
}

export interface Passage {
  title: string;
  text: string;
}

/**
 * A prompt in three parts: `head` and `tail` are kept whole; `middle` (passages, or the earlier turns of a
 * conversation) is what a too-long prompt loses, from its end (`cut: "end"`, passages: the best come first) or
 * from its start (`cut: "start"`, a conversation: the oldest turns go).
 */
export interface PromptParts {
  head: string;
  middle: string;
  tail: string;
  cut: "start" | "end";
}

export const systemPart = (system: string | null): string => (system ? `System: ${system}\n\n` : "");

/** `title: …, source: …` for each passage, blank-line separated (Megatron's context format). */
export function formatPassages(passages: Passage[]): string {
  return passages.map((p) => `title: ${p.title}, source: ${p.text}`).join("\n\n");
}

/** A question (with passages or without) as a prompt ending in "Assistant: The answer is". */
export function qaPrompt(question: string, passages: Passage[], system: string | null): PromptParts {
  return {
    head: systemPart(system) + "User: ",
    middle: passages.length ? formatPassages(passages) + "\n\n" : "",
    tail: `${question.trim()} ${QA_INSTRUCTION}\n\nAssistant: ${QA_ANSWER_PREFIX}`,
    cut: "end",
  };
}

/**
 * A conversation as prompt parts and the answer (the last assistant turn, with a leading space).
 * A system message, if any, replaces `system`. The conversation must end with an assistant turn.
 */
export function chatPrompt(messages: Message[], system: string | null): { parts: PromptParts; answer: string } {
  let sys = system;
  let turns = messages;
  if (turns.length && turns[0].role === "system") {
    sys = turns[0].content.trim();
    turns = turns.slice(1);
  }
  const last = turns[turns.length - 1];
  const before = turns.slice(0, -1).map((m) => `${m.role === "user" ? "User" : "Assistant"}: ${m.content.trim()}`);
  // the last user turn stays whole with "Assistant:"; older turns are what a long prompt loses
  const lastUser = before.pop() ?? "";
  return {
    parts: {
      head: systemPart(sys),
      middle: before.map((t) => t + "\n\n").join(""),
      tail: `${lastUser}\n\nAssistant:`,
      cut: "start",
    },
    answer: " " + last.content.trim(),
  };
}

/**
 * A conversation that ends with the user's turn, as the text the tuned model continues: the tuning template
 * (system, turns) ending in "Assistant:". `retro serve`'s chat route and `retro generate --chat`.
 */
export function chatContinuation(messages: Message[], system: string | null): string {
  if (!messages.length || messages[messages.length - 1].role !== "user")
    throw new RetroError("usage", "the last message must be the user's");
  const { parts } = chatPrompt([...messages, { role: "assistant", content: "" }], system);
  return parts.head + parts.middle + parts.tail;
}

/**
 * Tokens of a prompt within `room` tokens: head, middle, tail encoded separately (so the answer prefix of the QA
 * template ends the prompt exactly as at evaluation) and the middle cut when the whole is too long; if head and
 * tail alone overflow, the prompt keeps its last `room` tokens. `cut` counts the tokens dropped.
 */
export function encodePrompt(tok: Tokenizer, p: PromptParts, room: number): { ids: number[]; cut: number } {
  const head = tok.encode(p.head),
    mid = tok.encode(p.middle),
    tail = tok.encode(p.tail);
  const total = head.length + mid.length + tail.length;
  if (total <= room) return { ids: [...head, ...mid, ...tail], cut: 0 };
  const keepMid = Math.max(0, room - head.length - tail.length);
  const midKept = p.cut === "end" ? mid.slice(0, keepMid) : mid.slice(mid.length - keepMid);
  let ids = [...head, ...midKept, ...tail];
  if (ids.length > room) ids = ids.slice(ids.length - room);
  return { ids, cut: total - ids.length };
}
