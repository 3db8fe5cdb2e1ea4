/** Create or load the embedder a database config names. */
import * as fs from "node:fs";
import * as path from "node:path";
import type { EmbedderSpec } from "../db/config.ts";
import { readBlock, writeBlock } from "../util/blockfile.ts";
import type { Embedder } from "./embedder.ts";
import { fitIdf, LexicalEmbedder } from "./lexical.ts";
import { OnnxEmbedder } from "./onnx.ts";

export type { Embedder } from "./embedder.ts";

/**
 * Load the database's embedder; fit it first (from `fitTexts`) where it has state and none is saved.
 * State is kept in `dir` (lexical: its IDF table).
 */
export async function openEmbedder(spec: EmbedderSpec, dir: string, fitTexts?: () => Iterable<string>): Promise<Embedder> {
  if (spec.kind === "lexical") {
    const f = path.join(dir, "lexical-idf.blk");
    if (!fs.existsSync(f)) {
      if (!fitTexts) throw new Error(`lexical embedder state missing: ${f}`);
      const idf = fitIdf(fitTexts());
      writeBlock(f, idf, 1, idf.length);
    }
    return new LexicalEmbedder(spec.dim, readBlock(f, Float32Array).data);
  }
  return OnnxEmbedder.create(spec);
}
