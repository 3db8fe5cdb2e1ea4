/**
 * Tokenizers behind one interface. Two kinds:
 *  - "gpt2": GPT-2 BPE (50,257 ids, end-of-document 50256) through js-tiktoken;
 *  - "bpe":  a byte-level BPE learned from the corpus at a chosen vocabulary size (see bpe.ts),
 *            for small models whose output layer a 50k vocabulary would dominate.
 * Every tokenizer has an `id` that names it exactly (kind, size, hash of its merges); the token
 * store and the database record it, and refuse to mix artefacts made with different ids.
 */
import * as fs from "node:fs";
import { getEncoding } from "js-tiktoken";
import { BpeTokenizer, type BpeModel } from "./bpe.ts";
import { RetroError } from "../util/errors.ts";
import { readJson } from "../util/fsx.ts";

export type { Tokenizer } from "./types.ts";
import type { Tokenizer } from "./types.ts";

class Gpt2Tokenizer implements Tokenizer {
  readonly id = "gpt2";
  readonly vocabSize = 50257;
  readonly eod = 50256;
  private enc = getEncoding("gpt2");
  encode(text: string): number[] {
    // "<|endoftext|>" inside a document is text, not the special token
    return this.enc.encode(text, [], []);
  }
  decode(ids: ArrayLike<number>): string {
    return this.enc.decode(Array.from(ids).filter((t) => t !== this.eod));
  }
}

export function gpt2Tokenizer(): Tokenizer {
  return new Gpt2Tokenizer();
}

/** Load a tokenizer from its saved file (bpe) or by name (gpt2). */
export function loadTokenizer(spec: string): Tokenizer {
  if (spec === "gpt2") return gpt2Tokenizer();
  if (!fs.existsSync(spec)) throw new RetroError("notFound", `tokenizer file not found: ${spec} (or use "gpt2")`);
  const model = readJson<BpeModel>(spec, "tokenizer");
  if (model.kind !== "bpe-bytes" || !Array.isArray(model.merges))
    throw new RetroError("corrupt", `${spec} is not a retro-ts BPE tokenizer file`);
  return new BpeTokenizer(model);
}
