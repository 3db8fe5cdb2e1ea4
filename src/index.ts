/**
 * The retro-ts library: each pipeline step's public API, the same units the `retro` CLI runs.
 * (Packaging it as compiled JavaScript is still to do: today it is imported as TypeScript through tsx.)
 */
// step 1: corpora and the retrieval database
export { openSource, defaultDatasets, type DatasetSpec, type Document } from "./data/sources.ts";
export { CORPORA, corpusDataset, installCorpora, type CorpusEntry } from "./data/catalogue.ts";
export { findSwordModule, swordChapters } from "./data/sword.ts";
export { dictdDocs } from "./data/dictd.ts";
export { loadTokenizer, gpt2Tokenizer, type Tokenizer } from "./tokenizer/tokenizer.ts";
export { buildDatabase, type BuildOptions } from "./db/build.ts";
export { resolveConfig as resolveDbConfig, defaultConfig as defaultDbConfig, type DbConfig } from "./db/config.ts";
export { Database, type Manifest } from "./db/database.ts";
export { Retriever, type Citation, type SearchOptions, type SearchResult } from "./db/retriever.ts";
export { Bm25Index } from "./db/bm25.ts";
// step 2: models and training
export { loadEngine, type Engine } from "./engine/native.ts";
export { Model, type Batch } from "./model/model.ts";
export { resolveModelConfig, type ModelConfig } from "./model/config.ts";
export { loadModel, saveCheckpoint } from "./model/checkpoint.ts";
export { train, type TrainConfig, type TrainResult } from "./train/trainer.ts";
// step 3: evaluation
export { evaluate, type EvalResult } from "./train/evaluate.ts";
export { evalControls, evalInContext, type ControlReport, type InContextReport } from "./train/controls.ts";
// generation
export { Generator, type GenerateEvent, type GenerateOptions, type GenerateResult, type RetrieveMode } from "./generate/generate.ts";
export { Decoder, type Feed, type Slot } from "./generate/decoder.ts";
export { Sampler, type SamplingOptions } from "./generate/sampling.ts";
export { RetroError, ExitCode } from "./util/errors.ts";
