/**
 * Where the facts sit in the held-out split: a token mask over the valid split's stream marking the tokens of
 * each attribute value of the knowledge corpus's held-out biographies (src/data/people.ts), for
 * `evalControls`'s per-mask losses (the loss on fact tokens apart from the rest).
 */
import type { Database } from "../db/database.ts";
import type { Biography } from "../data/people.ts";
import { RetroError } from "../util/errors.ts";

export interface FactMask {
  mask: Uint8Array;
  /** fact tokens marked */
  tokens: number;
  /** documents whose tokenization did not split at a fact's edges (their facts left unmarked) */
  skipped: number;
}

/**
 * Mark the fact tokens of dataset `dataset`'s held-out documents; `bios[ordinal]` is the rendering that the
 * dataset's document `ordinal` holds. A value's tokens are those the document's tokenization gives between the
 * text before the value and the text through it (byte-level BPE pre-tokenizes at the space before a word).
 */
export function heldOutFactMask(db: Database, dataset: string, bios: Biography[]): FactMask {
  const di = db.manifest.datasets?.findIndex((d) => d.name === dataset) ?? -1;
  if (di < 0) throw new RetroError("badInput", `${db.dir}: no dataset "${dataset}"`);
  const v = db.valid,
    tok = db.tokenizer;
  const total = v.docStart(v.nDocs - 1) + v.docLength(v.nDocs - 1);
  const mask = new Uint8Array(total + 1);
  let tokens = 0,
    skipped = 0;
  for (let d = 0; d < v.nDocs; d++) {
    if (v.docDataset(d) !== di) continue;
    const bio = bios[v.docOrdinal(d)];
    if (!bio)
      throw new RetroError(
        "mismatch",
        `${db.dir}: held-out document ${v.docOrdinal(d)} of "${dataset}" has no biography in the facts given`,
      );
    const ids = v.read(v.docStart(d), v.docStart(d) + v.docLength(d));
    const spans: [number, number][] = [];
    let ok = true;
    for (const f of bio.facts) {
      const before = tok.encode(bio.text.slice(0, f.start).trimEnd()),
        through = tok.encode(bio.text.slice(0, f.end));
      // the document's own tokens must begin with those of the text through the value
      for (let i = 0; i < through.length && ok; i++) if (through[i] !== ids[i]) ok = false;
      if (!ok) break;
      spans.push([before.length, through.length]);
    }
    if (!ok) {
      skipped++;
      continue;
    }
    for (const [a, b] of spans) for (let t = a; t < b; t++) (mask[v.docStart(d) + t] = 1), tokens++;
  }
  return { mask, tokens, skipped };
}
