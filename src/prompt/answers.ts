/** Answer normalisation as the QA benchmarks define it (SQuAD; ParlAI for Megatron's F1). */

const PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;

/** SQuAD's normalize_answer */
export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(PUNCT, "")
    .replace(/\b(a|an|the)\b/g, " ")
    .split(/\s+/)
    .filter(Boolean)
    .join(" ");
}

/** ParlAI's normalize_answer (Megatron's F1): punctuation replaced by a space */
export function normalizeParlai(s: string): string {
  return s
    .toLowerCase()
    .replace(PUNCT, " ")
    .replace(/\b(a|an|the)\b/g, " ")
    .split(/\s+/)
    .filter(Boolean)
    .join(" ");
}
