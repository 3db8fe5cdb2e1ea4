/**
 * `retro eval score`: predictions against gold answers, as the official SQuAD scripts print them.
 * Predictions: JSONL of {"id", "prediction"} (what `retro eval qa` writes) or the official predictions JSON
 * ({id: text}). Gold: any QA format of formats.ts. Every gold id needs a prediction; mismatches are counted.
 */
import { RetroError } from "../util/errors.ts";
import { jsonLines } from "../util/jsonl.ts";
import { readTextFile } from "../util/fsx.ts";
import { readQaFile } from "../prompt/qa-formats.ts";
import { corpusScore, type CorpusScore, type F1Variant } from "./metrics.ts";

export function readPredictions(file: string): Map<string, string> {
  const text = readTextFile(file, "predictions");
  const out = new Map<string, string>();
  let whole: unknown;
  try {
    whole = JSON.parse(text);
  } catch {
    whole = undefined;
  }
  if (whole && typeof whole === "object" && !Array.isArray(whole) && !("prediction" in (whole as object))) {
    for (const [id, v] of Object.entries(whole as Record<string, unknown>)) {
      if (typeof v !== "string")
        throw new RetroError("badInput", `${file}: the prediction of "${id}" must be a string`);
      out.set(id, v);
    }
    return out;
  }
  jsonLines(text, file, `; expected {"id", "prediction"} per line or {id: text}`).forEach(({ line, value }) => {
    const r = value as Record<string, unknown>;
    if (r === null || typeof r !== "object" || r.id === undefined || typeof r.prediction !== "string")
      throw new RetroError("badInput", `${file}:${line}: expected {"id", "prediction": string}`);
    out.set(String(r.id), r.prediction);
  });
  return out;
}

export function scoreFiles(
  predictions: string,
  gold: string,
  o: { f1?: F1Variant; rouge?: boolean } = {},
): CorpusScore {
  const preds = readPredictions(predictions);
  const items = readQaFile(gold).items;
  const ids = new Set(items.map((q) => q.id));
  const missing = items.filter((q) => !preds.has(q.id)).length;
  const extra = [...preds.keys()].filter((id) => !ids.has(id)).length;
  if (missing || extra) {
    throw new RetroError(
      "mismatch",
      `predictions and gold do not match: ${missing} of ${items.length} gold questions have no prediction, ${extra} ` +
        `of ${preds.size} predictions have no gold question`,
    );
  }
  return corpusScore(
    items.map((q) => ({ prediction: preds.get(q.id)!, answers: q.answers })),
    o,
  );
}
