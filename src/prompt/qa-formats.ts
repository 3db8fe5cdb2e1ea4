/**
 * Question-answering files, read into one shape (QaItem). Formats, told apart by their content:
 *   - SQuAD 1.1 / 2.0 JSON: {"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
 *     "answers": [{"text"}], "is_impossible"?}]}]}]} — the paragraph is the item's passage; a 2.0 question
 *     marked impossible has the empty answer as its only gold (the official v2.0 script's rule);
 *   - KILT JSONL (NQ, TriviaQA, …): one {"id", "input", "output": [{"answer"}, …]} per line;
 *   - Megatron QA JSON: a JSON array of {"question", "answers" | "answer", "ctxs"?: [{"title", "text"}], "id"?};
 *   - plain JSONL: one {"question", "answers" | "answer", "id"?, "passages"?: [{"title", "text"}] | "context"?} per
 *     line.
 * A missing field is an error naming the file and the line (JSONL) or item (JSON); so is an empty answer list.
 */
import { RetroError } from "../util/errors.ts";
import { jsonLines } from "../util/jsonl.ts";
import { readTextFile } from "../util/fsx.ts";
import type { Passage } from "./format.ts";

export type QaFormat = "squad" | "kilt" | "megatron" | "jsonl";
export const QA_FORMATS =
  "SQuAD 1.1/2.0 JSON, KILT JSONL, Megatron QA JSON (array of {question, answers, ctxs}), plain JSONL ({question, " +
  "answers})";

export interface QaItem {
  id: string;
  question: string;
  /** gold answers (SQuAD 2.0 unanswerable: [""]) */
  answers: string[];
  /** passages the file gives (SQuAD's paragraph, Megatron's ctxs), best first */
  passages: Passage[];
}

export interface QaFile {
  format: QaFormat;
  items: QaItem[];
}

type Rec = Record<string, unknown>;

export function readQaFile(file: string): QaFile {
  const text = readTextFile(file, "QA file");
  let whole: unknown;
  try {
    whole = JSON.parse(text);
  } catch {
    whole = undefined;
  }
  if (whole && typeof whole === "object" && !Array.isArray(whole) && Array.isArray((whole as Rec).data))
    return nonEmpty(file, { format: "squad", items: readSquad(file, whole as Rec) });
  if (Array.isArray(whole))
    return nonEmpty(file, { format: "megatron", items: whole.map((r, i) => megatronItem(file, r, i)) });
  // JSON lines
  const items: QaItem[] = [];
  let format: QaFormat | null = null;
  jsonLines(text, file, `; accepted formats: ${QA_FORMATS}`).forEach(({ line, value: rec }) => {
    if (!rec || typeof rec !== "object" || Array.isArray(rec))
      throw new RetroError("badInput", `${file}:${line}: expected a JSON object; accepted formats: ${QA_FORMATS}`);
    const r = rec as Rec;
    const kind: QaFormat | null = "input" in r && "output" in r ? "kilt" : "question" in r ? "jsonl" : null;
    if (!kind)
      throw new RetroError(
        "badInput",
        `${file}:${line}: unknown shape (keys ${Object.keys(r).join(", ") || "none"}); accepted formats: ${QA_FORMATS}`,
      );
    format ??= kind;
    items.push(kind === "kilt" ? kiltItem(file, r, line) : plainItem(file, r, line));
  });
  if (!format) throw new RetroError("badInput", `${file}: no questions found; accepted formats: ${QA_FORMATS}`);
  return { format, items };
}

/** a QA set without questions scores nothing: refused, not reported as a score of 0 over 0 questions */
function nonEmpty(file: string, f: QaFile): QaFile {
  if (!f.items.length) throw new RetroError("badInput", `${file}: no questions (an empty ${f.format} set)`);
  return f;
}

const where = (file: string, at: number | string) => (typeof at === "number" ? `${file}:${at}` : `${file} ${at}`);

function str(file: string, at: number | string, r: Rec, key: string): string {
  const v = r[key];
  if (typeof v !== "string")
    throw new RetroError(
      "badInput",
      `${where(file, at)}: field "${key}" ${v === undefined ? "is missing" : "must be a string"}`,
    );
  return v;
}

function answersOf(file: string, at: number | string, r: Rec): string[] {
  const a = r.answers ?? (typeof r.answer === "string" ? [r.answer] : r.answer);
  if (a === undefined) throw new RetroError("badInput", `${where(file, at)}: field "answers" is missing`);
  if (!Array.isArray(a) || a.some((x) => typeof x !== "string"))
    throw new RetroError("badInput", `${where(file, at)}: "answers" must be a list of strings`);
  if (a.length === 0)
    throw new RetroError("badInput", `${where(file, at)}: "answers" is empty (every question needs a gold answer)`);
  return a as string[];
}

function passagesOf(file: string, at: number | string, v: unknown): Passage[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v))
    throw new RetroError("badInput", `${where(file, at)}: passages must be a list of {title, text}`);
  return v.map((p, j) => {
    if (typeof p === "string") return { title: "", text: p };
    const pr = p as Rec;
    if (!pr || typeof pr.text !== "string")
      throw new RetroError("badInput", `${where(file, at)}: passage ${j} has no "text"`);
    return { title: typeof pr.title === "string" ? pr.title : "", text: pr.text };
  });
}

function readSquad(file: string, doc: Rec): QaItem[] {
  const out: QaItem[] = [];
  (doc.data as unknown[]).forEach((art, a) => {
    const ar = art as Rec;
    if (!ar || !Array.isArray(ar.paragraphs))
      throw new RetroError("badInput", `${file} data[${a}]: field "paragraphs" is missing`);
    const title = typeof ar.title === "string" ? ar.title.replace(/_/g, " ") : "";
    (ar.paragraphs as unknown[]).forEach((par, p) => {
      const pr = par as Rec;
      const at = `data[${a}].paragraphs[${p}]`;
      const context = str(file, at, pr, "context");
      if (!Array.isArray(pr.qas)) throw new RetroError("badInput", `${file} ${at}: field "qas" is missing`);
      (pr.qas as unknown[]).forEach((q, j) => {
        const qr = q as Rec,
          qat = `${at}.qas[${j}]`;
        const id = str(file, qat, qr, "id"),
          question = str(file, qat, qr, "question");
        if (!Array.isArray(qr.answers)) throw new RetroError("badInput", `${file} ${qat}: field "answers" is missing`);
        let answers = (qr.answers as Rec[]).map((x, j) => {
          if (!x || typeof x.text !== "string")
            throw new RetroError("badInput", `${file} ${qat}: answer ${j} has no "text" (a string)`);
          return x.text;
        });
        if (qr.is_impossible === true) answers = [""];
        if (!answers.length)
          throw new RetroError(
            "badInput",
            `${file} ${qat}: "answers" is empty (and the question is not marked is_impossible)`,
          );
        out.push({ id, question, answers, passages: [{ title, text: context }] });
      });
    });
  });
  return out;
}

function megatronItem(file: string, rec: unknown, i: number): QaItem {
  const at = `item ${i}`;
  if (!rec || typeof rec !== "object")
    throw new RetroError("badInput", `${file} ${at}: expected an object {question, answers, ctxs}`);
  const r = rec as Rec;
  return {
    id: r.id !== undefined ? String(r.id) : String(i),
    question: str(file, at, r, "question"),
    answers: answersOf(file, at, r),
    passages: passagesOf(file, at, r.ctxs),
  };
}

function kiltItem(file: string, r: Rec, line: number): QaItem {
  if (!Array.isArray(r.output)) throw new RetroError("badInput", `${file}:${line}: "output" must be a list`);
  const answers = (r.output as Rec[]).filter((o) => o && typeof o.answer === "string").map((o) => o.answer as string);
  if (!answers.length)
    throw new RetroError("badInput", `${file}:${line}: no "answer" in "output" (every question needs a gold answer)`);
  return {
    id: r.id !== undefined ? String(r.id) : String(line),
    question: str(file, line, r, "input"),
    answers,
    passages: [],
  };
}

function plainItem(file: string, r: Rec, line: number): QaItem {
  const passages =
    r.passages !== undefined
      ? passagesOf(file, line, r.passages)
      : typeof r.context === "string"
        ? [{ title: "", text: r.context }]
        : passagesOf(file, line, r.ctxs);
  return {
    id: r.id !== undefined ? String(r.id) : String(line),
    question: str(file, line, r, "question"),
    answers: answersOf(file, line, r),
    passages,
  };
}
