/**
 * Every training setting of `retro train` and `retro sft`, declared once (src/util/settings.ts): key, kind, bounds,
 * default and help. The run config's type (`TrainSettings`), `DEFAULT_TRAIN`, the validation of a config (a flag,
 * a `--config` file or a resumed run's config.json), the resume check, the CLI flags (src/cli/flags.ts) and
 * docs/configuration.md all come from this table. Defaults are sized for the bundled corpus on 2 cores (a
 * 5.3M-parameter GPT, ~0.4 s per step).
 */
import { SEED_RANGE } from "../util/numbers.ts";
import { DEFAULT_SEED } from "../util/rng.ts";
import { defaultsOf, defineSettings, type SettingValues } from "../util/settings.ts";

export const TRAIN_SETTINGS = defineSettings({
  freezeDecoder: {
    kind: "bool",
    default: false,
    help: "Retro-fitting with the decoder frozen (only encoder and CCA train)",
  },
  freezeDecoderSteps: {
    kind: "int",
    min: 0,
    default: 0,
    legacy: 0,
    help: "Retro: decoder frozen for the first N steps, then unfrozen",
  },
  retrievalLr: {
    kind: "num",
    above: 0,
    default: 1,
    legacy: 1,
    help: "Retro: learning-rate multiplier of the encoder and CCA",
  },
  zeroCcaOut: {
    kind: "bool",
    default: false,
    legacy: false,
    negatable: true,
    help: "Retro, fresh retrieval weights: CCA output projections start at 0 (a Retro-fit starts at its GPT)",
  },
  blend: {
    kind: "text",
    default: "",
    legacy: "",
    help:
      "this run's dataset weights over the database's, name=weight[,name=weight…]; datasets not named keep " +
      "theirs (e.g. fit=0: a GPT pretrained without the text its Retro-fit will then draw)",
  },
  retrievalInit: {
    kind: "choice",
    choices: ["random", "decoder"],
    default: "random",
    legacy: "random",
    help:
      "Retro-fitting: the fresh encoder and CCA drawn at random (the paper), or copied from the decoder (encoder " +
      "layer j = decoder layer j, each CCA = its layer's self-attention): CCA starts reading its neighbours as the " +
      "GPT reads its context",
  },
  batch: { kind: "int", min: 1, default: 8, help: "sequences per micro-batch" },
  accum: {
    kind: "int",
    min: 1,
    default: 1,
    help: "micro-batches per optimizer step (gradients weighted by counted tokens)",
  },
  steps: { kind: "int", min: 1, default: 1000, help: "optimizer steps" },
  lr: { kind: "num", above: 0, default: 1e-3, help: "peak learning rate" },
  minLr: { kind: "num", min: 0, default: 1e-4, help: "final learning rate (cosine decay)" },
  warmup: { kind: "int", min: 0, default: 100, help: "linear warmup steps" },
  beta1: { kind: "num", min: 0, below: 1, default: 0.9, help: "AdamW beta1" },
  beta2: { kind: "num", min: 0, below: 1, default: 0.95, help: "AdamW beta2" },
  eps: { kind: "num", above: 0, default: 1e-8, help: "AdamW epsilon" },
  weightDecay: { kind: "num", min: 0, default: 0.1, help: "AdamW weight decay (matrices and embeddings)" },
  clip: { kind: "num", min: 0, default: 1.0, help: "gradient-norm clip (0 = off)" },
  evalEvery: { kind: "int", min: 1, default: 200, help: "steps between evaluations" },
  evalBatches: {
    kind: "int",
    min: -1,
    default: 20,
    help: "validation batches per evaluation (0: no evaluation; -1: the whole split)",
  },
  saveEvery: { kind: "int", min: 1, default: 200, help: "steps between checkpoints" },
  seed: { kind: "int", ...SEED_RANGE, default: DEFAULT_SEED, help: "seed (init and data order)" },
  threads: {
    kind: "int",
    min: 1,
    max: 256,
    default: 2,
    help: "kernel threads (results are bit-identical only for the same count)",
  },
  precision: {
    kind: "choice",
    choices: ["fp32", "bf16"],
    default: "fp32",
    help: "matmul precision of the linear layers (bf16: fp32 accumulation and master weights)",
  },
});

export type TrainSettings = SettingValues<typeof TRAIN_SETTINGS>;

export const DEFAULT_TRAIN: TrainSettings = defaultsOf(TRAIN_SETTINGS);
