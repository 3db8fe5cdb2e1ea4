/** The database's manifest (`manifest.json`): what each finished build stage produced. */
import type { TokenDtype, SplitInfo } from "../data/tokenstore.ts";
import type { IndexRecord } from "../search/types.ts";

export const DB_FORMAT = "retro-ts-db/1";

export interface DatasetInfo {
  name: string;
  weight: number;
  trainDocs: number;
  validDocs: number;
  skippedLines: number;
}

export interface Manifest {
  format: string;
  tokenizer?: { id: string; vocabSize: number; eod: number; dtype: TokenDtype };
  chunkLength: number;
  datasets?: DatasetInfo[];
  splits?: { train: SplitInfo; valid: SplitInfo };
  chunks?: { count: number; padded: number };
  /** fitSeconds: fitting the embedder's state (LSA, IDF); embedSeconds: embedding the blocks this run computed */
  embeddings?: { embedderId: string; dim: number; blocks: number; fitSeconds?: number; embedSeconds?: number };
  /** the index's record (src/search/types.ts): what its backend needs to open and check it */
  index?: IndexRecord;
  neighbours?: Record<
    string,
    {
      seq: number;
      samples: number;
      chunksPerSample: number;
      keep: number;
      candidates: number;
      blockSize: number;
      embedderId: string;
    }
  >;
}
