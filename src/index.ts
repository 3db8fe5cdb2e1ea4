/**
 * The retro-ts library: each pipeline step's public API, the same units the `retro` CLI runs.
 * Installed, it is the compiled JavaScript in dist/ (`npm run build`, run by `prepack`), with declarations.
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
export { Bm25Index } from "./search/bm25.ts";
export { indexBackend, indexBackends, registerIndexBackend } from "./search/registry.ts";
export type {
  IndexBackend,
  IndexSettings,
  IndexRecord,
  SearchIndex,
  SearchHits,
  SearchQueries,
  IndexBatch,
  IndexContext,
  IndexFiles,
} from "./search/types.ts";
// step 2: models and training
export { loadEngine, type Engine } from "./engine/native.ts";
export { Model, type Batch } from "./model/model.ts";
export { AdamW } from "./model/optim.ts";
export { resolveModelConfig, type ModelConfig } from "./model/config.ts";
export { loadModel, saveCheckpoint } from "./model/checkpoint.ts";
export { train, runTask, type TrainConfig, type TrainResult, type BatchSource, type RunTask } from "./train/trainer.ts";
export { TRAIN_SETTINGS, DEFAULT_TRAIN, type TrainSettings } from "./train/settings.ts";
export { MODEL_SETTINGS, DEFAULT_MODEL } from "./model/config.ts";
export {
  defineSettings,
  defaultsOf,
  resolveSettings,
  settingsMarkdown,
  type Setting,
  type SettingsTable,
  type SettingValues,
} from "./util/settings.ts";
// step 3: evaluation
export { evaluate, type EvalResult } from "./train/evaluate.ts";
export { evalControls, evalInContext, type ControlReport, type InContextReport } from "./train/controls.ts";
// step 4: instruction tuning
export { sft, type SftInput } from "./sft/sft.ts";
export {
  SYSTEM_PROMPT,
  chatPrompt,
  chatContinuation,
  qaPrompt,
  encodePrompt,
  type Message,
  type Passage,
  type PromptParts,
} from "./prompt/format.ts";
export { readConversations, tokenizeExample, type Conversation } from "./sft/data.ts";
export { SftLoader, sftBatch, loadSftData } from "./sft/loader.ts";
export { buildBundledSets } from "./sft/bundled.ts";
// step 5: question answering
export { evalQa, type QaOptions, type QaReport, type QaVariant, type QaPrediction } from "./qa/evaluate.ts";
export { readQaFile, type QaItem, type QaFormat } from "./prompt/qa-formats.ts";
export {
  corpusScore,
  scoreAnswer,
  scoreRouge,
  normalizeAnswer,
  exactMatch,
  f1Score,
  rougeN,
  rougeL,
  type CorpusScore,
} from "./qa/metrics.ts";
export { scoreFiles, readPredictions } from "./qa/score.ts";
// generation
export {
  Generator,
  type GenerateEvent,
  type GenerateOptions,
  type GenerateResult,
  type RetrieveMode,
} from "./generate/generate.ts";
export { Decoder, type Feed, type Slot } from "./generate/decoder.ts";
export { Sampler, type SamplingOptions } from "./generate/sampling.ts";
// serving
export { RetroServer, type ServeOptions } from "./serve/server.ts";
// the demo
export { runDemo, type DemoOptions, type DemoSummary } from "./demo/pipeline.ts";
export { RetroError, ExitCode } from "./util/errors.ts";
