/**
 * `retro eval qa` (step 5): zero-shot question answering with retrieval-augmented generation.
 *
 * Each question's passages — the file's own (SQuAD's paragraph, Megatron's ctxs) or the top-k chunks the
 * database retrieves for the question text — go into the prompt with Megatron's template (src/prompt/format.ts);
 * passage text is cut (never the question) when the prompt would not leave room for the answer, and counted.
 * Greedy decoding, batched, up to a newline, the end-of-document token or `maxTokens`. Variants:
 *   - "rag": passages in the prompt; Retro with the CCA gate at 0 (InstructRetro's decoder alone);
 *   - "encoder": Retro with the gate at 1 and the top-k passages in the encoder as well (k = the model's), every
 *     chunk reading them, as Megatron's evaluation does (retrieved chunks with their continuation; a file's
 *     passages as their first r tokens);
 *   - "none": no passages (closed book), gate 0.
 */
import type { Model } from "../model/model.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { Retriever } from "../db/retriever.ts";
import { Generator } from "../generate/generate.ts";
import { encodePrompt, qaPrompt, type Passage } from "../prompt/format.ts";
import { passageBudget, questionTokens, retrievePassages } from "../prompt/passages.ts";
import { RetroError } from "../util/errors.ts";
import { progress } from "../util/progress.ts";
import { corpusScore, scoreAnswer, type CorpusScore, type F1Variant } from "./metrics.ts";
import type { QaItem } from "../prompt/qa-formats.ts";

export type QaVariant = "rag" | "encoder" | "none";

export interface QaOptions {
  variant: QaVariant;
  /** where passages come from: the file's, or retrieved from the database (default: the file's when it has them) */
  passages?: "file" | "retrieve";
  /** passages per question (default 5) */
  topK?: number;
  /** system prompt (null: none) */
  system: string | null;
  /** new tokens at most (default 32) */
  maxTokens?: number;
  /** questions decoded together (default 8) */
  batch?: number;
  f1?: F1Variant;
  rouge?: boolean;
  showProgress?: boolean;
}

export interface QaPrediction {
  id: string;
  question: string;
  prediction: string;
  answers: string[];
  em: number;
  f1: number;
  /** where each passage came from: "file" or the database chunk id */
  passages: (number | "file")[];
  /** prompt tokens cut to fit */
  cut: number;
}

export interface QaReport extends CorpusScore {
  variant: QaVariant;
  passages: "file" | "retrieve" | "none";
  /** questions whose prompt lost passage text to fit */
  truncated: number;
  seconds: number;
  questions_per_s: number;
  predictions: QaPrediction[];
}

/** the first `r` tokens of a text, padded with the end-of-document token */
function fixedTokens(tok: Tokenizer, text: string, r: number): Int32Array {
  const out = new Int32Array(r).fill(tok.eod);
  const ids = tok.encode(text);
  out.set(ids.slice(0, r));
  return out;
}

export async function evalQa(
  model: Model,
  tok: Tokenizer,
  retriever: Retriever | null,
  items: QaItem[],
  o: QaOptions,
): Promise<QaReport> {
  const c = model.config,
    topK = o.topK ?? 5,
    maxTokens = o.maxTokens ?? 32,
    batch = o.batch ?? 8;
  if (!(Number.isInteger(topK) && topK >= 0))
    throw new RetroError("usage", `top-k passages must be an integer ≥ 0, got ${topK}`);
  if (!(Number.isInteger(batch) && batch >= 1))
    throw new RetroError("usage", `batch must be a positive integer, got ${batch}`);
  if (o.variant === "encoder" && !model.isRetro) throw new RetroError("usage", `variant "encoder" needs a Retro model`);
  const fileHas = items.some((q) => q.passages.length > 0);
  const source: "file" | "retrieve" | "none" =
    o.variant === "none" ? "none" : (o.passages ?? (fileHas ? "file" : "retrieve"));
  if (source === "retrieve" && !retriever)
    throw new RetroError("usage", "passages retrieved from the database need --db");
  const room = c.seq - maxTokens;
  if (room < 16)
    throw new RetroError(
      "usage",
      `max tokens ${maxTokens} leaves ${room} of the model's ${c.seq} positions for the prompt`,
    );
  const gen = new Generator(model, tok, null);
  const keepGate = model.gate;
  model.gate = o.variant === "encoder" ? 1 : 0;
  const out: QaPrediction[] = [];
  const bar = o.showProgress ? progress(`qa ${o.variant}`, items.length, "questions") : null;
  const t0 = performance.now();
  try {
    for (let s = 0; s < items.length; s += batch) {
      const group = items.slice(s, s + batch);
      // passages per question: the top-k documents' windows that share the prompt's room (src/prompt/passages.ts);
      // the encoder also reads the model's k best chunks with their continuation
      const k = Math.max(topK, o.variant === "encoder" ? c.k : 0);
      const retrieved =
        source === "retrieve"
          ? await retrievePassages(
              retriever!,
              group.map((q) => q.question),
              {
                topK,
                maxTokens: (j) =>
                  passageBudget(room, questionTokens(tok, group[j].question, o.system), topK, retriever!.db.m),
              },
            )
          : null;
      const ids =
        source === "retrieve" && o.variant === "encoder"
          ? (
              await retriever!.search(
                group.map((q) => q.question),
                { keep: k },
              )
            ).ids
          : null;
      const passagesOf = (j: number): { p: Passage[]; from: (number | "file")[] } => {
        if (source === "none") return { p: [], from: [] };
        if (source === "file")
          return {
            p: group[j].passages.slice(0, topK),
            from: group[j].passages.slice(0, topK).map(() => "file" as const),
          };
        return { p: retrieved![j], from: retrieved![j].map((x) => x.chunk) };
      };
      const prompts: number[][] = [],
        cuts: number[] = [],
        froms: (number | "file")[][] = [];
      const nbrs: (Int32Array | null)[] = [];
      group.forEach((q, j) => {
        const { p, from } = passagesOf(j);
        const enc = encodePrompt(tok, qaPrompt(q.question, p, o.system), room);
        prompts.push(enc.ids);
        cuts.push(enc.cut);
        froms.push(from);
        if (o.variant === "encoder") {
          const nb = new Int32Array(c.k * c.r).fill(tok.eod);
          if (source === "retrieve")
            nb.set(retriever!.db.neighbourBlock(ids!.subarray(j * k, j * k + c.k), 1, c.k, c.k, c.r));
          else
            for (let t = 0; t < Math.min(c.k, q.passages.length); t++)
              nb.set(fixedTokens(tok, q.passages[t].text, c.r), t * c.r);
          nbrs.push(nb);
        }
      });
      const res = await gen.generate(prompts, {
        maxTokens,
        stop: ["\n"],
        retrieve: o.variant === "encoder" ? "prompt" : "none",
        neighbours: o.variant === "encoder" ? nbrs : undefined,
      });
      res.forEach((r, j) => {
        const q = group[j],
          prediction = r.text.trim();
        const sc = scoreAnswer(prediction, q.answers, o.f1);
        out.push({
          id: q.id,
          question: q.question,
          prediction,
          answers: q.answers,
          em: sc.em,
          f1: sc.f1,
          passages: froms[j],
          cut: cuts[j],
        });
      });
      bar?.update(Math.min(items.length, s + batch));
    }
  } finally {
    model.gate = keepGate;
    bar?.stop();
  }
  const seconds = (performance.now() - t0) / 1000;
  const score = corpusScore(out, { f1: o.f1, rouge: o.rouge });
  return {
    ...score,
    variant: o.variant,
    passages: source,
    truncated: out.filter((p) => p.cut > 0).length,
    seconds,
    questions_per_s: out.length / seconds,
    predictions: out,
  };
}
