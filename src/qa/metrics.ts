/**
 * Question-answering metrics.
 *
 * Exact match and token F1 as in the official SQuAD scripts: answers normalised (lower case, punctuation
 * removed, the articles a/an/the removed, whitespace collapsed), the best score over the gold answers, the
 * corpus figure the mean × 100. F1 over an empty side follows the v2.0 script (1 if both are empty, else 0),
 * which is what v1.1 gives whenever its gold answers are non-empty, and scores SQuAD 2.0's unanswerable
 * questions (gold "") correctly. `f1: "megatron"` is Megatron-LM's variant (tools/retro evaluation, ParlAI's
 * normalisation: punctuation becomes a space): the first gold answer only.
 *
 * ROUGE-1, -2 and -L F-measures as Google's rouge-score computes them without stemming (lower case, every
 * non-alphanumeric character a separator; n-gram overlap clipped by count; L from the longest common
 * subsequence), the best over the gold answers, and their geometric mean (the paper's long-form summary figure).
 * ROUGE is js-rouge's (its n-gram and LCS F-measures) fed rouge-score's tokenizer; EM/F1 are a few lines of
 * string handling with no maintained npm package of the official rules. Checked against hand-worked values
 * in test/unit/qa.test.ts.
 */
import * as rouge from "js-rouge";

export { normalizeAnswer, normalizeParlai } from "../prompt/answers.ts";
import { normalizeAnswer, normalizeParlai } from "../prompt/answers.ts";

export function exactMatch(prediction: string, gold: string): number {
  return normalizeAnswer(prediction) === normalizeAnswer(gold) ? 1 : 0;
}

function tokenF1(pred: string[], gold: string[]): number {
  if (pred.length === 0 || gold.length === 0) return pred.length === gold.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of gold) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of pred) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      same++;
      counts.set(t, c - 1);
    }
  }
  if (same === 0) return 0;
  const p = same / pred.length,
    r = same / gold.length;
  return (2 * p * r) / (p + r);
}

export function f1Score(prediction: string, gold: string, normalize: (s: string) => string = normalizeAnswer): number {
  const split = (s: string) => normalize(s).split(" ").filter(Boolean);
  return tokenF1(split(prediction), split(gold));
}

export type F1Variant = "squad" | "megatron";

export interface QaScore {
  em: number;
  f1: number;
}

/** Scores of one prediction against its gold answers (each 0 or 1 for EM, 0–1 for F1). */
export function scoreAnswer(prediction: string, golds: string[], variant: F1Variant = "squad"): QaScore {
  const em = Math.max(...golds.map((g) => exactMatch(prediction, g)));
  const f1 =
    variant === "megatron"
      ? f1Score(prediction, golds[0], normalizeParlai)
      : Math.max(...golds.map((g) => f1Score(prediction, g)));
  return { em, f1 };
}

// ------------------------------------------------------------------------------------------------ ROUGE
/** rouge-score's default tokenizer: lower case, non-alphanumerics are separators */
export function rougeTokens(s: string): string[] {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, " ")
    .split(" ")
    .filter(Boolean);
}

const rougeOpts = { tokenizer: rougeTokens, caseSensitive: true };

/** ROUGE-N F-measure (js-rouge with rouge-score's tokenizer; an empty side scores 0) */
export function rougeN(prediction: string, reference: string, n: number): number {
  if (!rougeTokens(prediction).length || !rougeTokens(reference).length) return 0;
  return rouge.n(prediction, reference, { ...rougeOpts, n });
}

/** ROUGE-L F-measure over the whole answer (one "sentence": the longest common subsequence of the token lists) */
export function rougeL(prediction: string, reference: string): number {
  if (!rougeTokens(prediction).length || !rougeTokens(reference).length) return 0;
  return rouge.l(prediction, reference, { ...rougeOpts, segmenter: (x: string) => [x] });
}

export interface RougeScore {
  rouge1: number;
  rouge2: number;
  rougeL: number;
}

/** ROUGE of one prediction, the best over the references for each measure */
export function scoreRouge(prediction: string, references: string[]): RougeScore {
  return {
    rouge1: Math.max(...references.map((r) => rougeN(prediction, r, 1))),
    rouge2: Math.max(...references.map((r) => rougeN(prediction, r, 2))),
    rougeL: Math.max(...references.map((r) => rougeL(prediction, r))),
  };
}

export interface CorpusScore {
  exact_match: number;
  f1: number;
  count: number;
  rouge1?: number;
  rouge2?: number;
  rougeL?: number;
  /** geometric mean of ROUGE-1, -2, -L */
  rouge_gm?: number;
}

/** Corpus figures on the official scripts' 0–100 scale. */
export function corpusScore(
  pairs: { prediction: string; answers: string[] }[],
  o: { f1?: F1Variant; rouge?: boolean } = {},
): CorpusScore {
  let em = 0,
    f1 = 0,
    r1 = 0,
    r2 = 0,
    rl = 0;
  for (const p of pairs) {
    const s = scoreAnswer(p.prediction, p.answers, o.f1);
    em += s.em;
    f1 += s.f1;
    if (o.rouge) {
      const r = scoreRouge(p.prediction, p.answers);
      r1 += r.rouge1;
      r2 += r.rouge2;
      rl += r.rougeL;
    }
  }
  const n = pairs.length,
    pct = (x: number) => (n ? (100 * x) / n : 0);
  const out: CorpusScore = { exact_match: pct(em), f1: pct(f1), count: n };
  if (o.rouge) {
    out.rouge1 = pct(r1);
    out.rouge2 = pct(r2);
    out.rougeL = pct(rl);
    out.rouge_gm = Math.cbrt(out.rouge1 * out.rouge2 * out.rougeL);
  }
  return out;
}
