/** Create or load the embedder a database config names. */
import * as fs from "node:fs";
import * as path from "node:path";
import type { EmbedderSpec } from "./embedder.ts";
import { RetroError } from "../util/errors.ts";
import { log } from "../util/progress.ts";
import { readBlock, writeBlock } from "../util/blockfile.ts";
import type { Embedder } from "./embedder.ts";
import { fitIdf, LexicalEmbedder } from "./lexical.ts";
import { OnnxEmbedder } from "./onnx.ts";
import { fitLsa, LsaEmbedder } from "./lsa.ts";
import { readJson, writeJsonAtomic } from "../util/fsx.ts";

export type { Embedder } from "./embedder.ts";

/**
 * Load the database's embedder; fit it first (from `fitTexts`) where it has state and none is saved.
 * State is kept in `dir` (lexical: its IDF table; lsa: vocabulary, IDF and projection).
 */
export async function openEmbedder(
  spec: EmbedderSpec,
  dir: string,
  fitTexts?: (n: number) => string[],
): Promise<Embedder> {
  if (spec.kind === "lsa") {
    // state: vocabulary (JSON), IDF and projection (blocks); the vocabulary is written last and marks completion
    const vf = path.join(dir, "lsa-vocab.json"),
      idfF = path.join(dir, "lsa-idf.blk"),
      projF = path.join(dir, "lsa-proj.blk");
    if (!fs.existsSync(vf)) {
      if (!fitTexts) throw new Error(`LSA embedder state missing: ${vf}`);
      log(`fitting the LSA embedder (${spec.dim} dims) on a random sample of ${spec.fitSample} chunks...`);
      const t0 = Date.now();
      const st = fitLsa(fitTexts(spec.fitSample), spec.dim, { minDf: spec.minDf });
      log(`LSA fitted in ${((Date.now() - t0) / 1000).toFixed(1)} s (vocabulary ${st.vocab.length} words)`);
      writeBlock(idfF, st.idf, 1, st.idf.length);
      writeBlock(projF, st.proj, st.vocab.length, spec.dim);
      writeJsonAtomic(vf, st.vocab);
    }
    const vocab = readJson<string[]>(vf, "LSA vocabulary");
    const proj = readBlock(projF, Float32Array);
    if (proj.rows !== vocab.length || proj.cols !== spec.dim)
      throw new RetroError(
        "mismatch",
        `${projF}: projection is ${proj.rows}×${proj.cols}, expected ${vocab.length}×${spec.dim}`,
      );
    return new LsaEmbedder({ vocab, idf: readBlock(idfF, Float32Array).data, proj: proj.data, dim: spec.dim });
  }
  if (spec.kind === "lexical") {
    const f = path.join(dir, "lexical-idf.blk");
    if (!fs.existsSync(f)) {
      if (!fitTexts) throw new Error(`lexical embedder state missing: ${f}`);
      const idf = fitIdf(fitTexts(50_000));
      writeBlock(f, idf, 1, idf.length);
    }
    return new LexicalEmbedder(spec.dim, readBlock(f, Float32Array).data);
  }
  return OnnxEmbedder.create(spec);
}
