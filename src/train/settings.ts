/**
 * Every training setting declared once — key, kind, bounds, help — and from that one table: the CLI flags of
 * `retro train` and `retro sft` (kebab-case of the key), the help text with each command's default, and the
 * validation of a config (a flag, a `--config` file or a resumed run's config.json go through the same checks).
 * Model settings (the decoder's size, Retro's k, r, layers…) are declared here for their flags; their values are
 * validated by `resolveModelConfig`.
 */
import { Option, type Command } from "commander";
import { RetroError } from "../util/errors.ts";
import { checkInt, checkNum, SEED_RANGE, type Range } from "../util/numbers.ts";
import { intFlag, numFlag } from "../cli/args.ts";

export type SettingKind = "int" | "num" | "bool" | "choice" | "intList";

export interface Setting {
  key: string;
  kind: SettingKind;
  help: string;
  /** inclusive bounds (numbers) */
  min?: number;
  max?: number;
  /** exclusive lower bound (numbers) */
  above?: number;
  /** exclusive upper bound (numbers) */
  below?: number;
  choices?: readonly string[];
  /** a bool setting whose default is true also gets `--no-<flag>` */
  negatable?: boolean;
}

/** the optimisation and run settings of `train` and `sft` (TrainConfig's scalar keys) */
export const TRAIN_SETTINGS: readonly Setting[] = [
  { key: "freezeDecoder", kind: "bool", help: "Retro-fitting with the decoder frozen (only encoder and CCA train)" },
  { key: "freezeDecoderSteps", kind: "int", min: 0, help: "Retro: decoder frozen for the first N steps, then unfrozen" },
  { key: "retrievalLr", kind: "num", above: 0, help: "Retro: learning-rate multiplier of the encoder and CCA" },
  { key: "zeroCcaOut", kind: "bool", negatable: true, help: "Retro, fresh retrieval weights: CCA output projections start at 0 (a Retro-fit starts at its GPT)" },
  { key: "batch", kind: "int", min: 1, help: "sequences per micro-batch" },
  { key: "accum", kind: "int", min: 1, help: "micro-batches per optimizer step (gradients weighted by counted tokens)" },
  { key: "steps", kind: "int", min: 1, help: "optimizer steps" },
  { key: "lr", kind: "num", above: 0, help: "peak learning rate" },
  { key: "minLr", kind: "num", min: 0, help: "final learning rate (cosine decay)" },
  { key: "warmup", kind: "int", min: 0, help: "linear warmup steps" },
  { key: "beta1", kind: "num", min: 0, below: 1, help: "AdamW beta1" },
  { key: "beta2", kind: "num", min: 0, below: 1, help: "AdamW beta2" },
  { key: "eps", kind: "num", above: 0, help: "AdamW epsilon" },
  { key: "weightDecay", kind: "num", min: 0, help: "AdamW weight decay (matrices and embeddings)" },
  { key: "clip", kind: "num", min: 0, help: "gradient-norm clip (0 = off)" },
  { key: "evalEvery", kind: "int", min: 1, help: "steps between evaluations" },
  { key: "evalBatches", kind: "int", min: 0, help: "validation batches per evaluation (0 = all)" },
  { key: "saveEvery", kind: "int", min: 1, help: "steps between checkpoints" },
  { key: "seed", kind: "int", min: SEED_RANGE.min, max: SEED_RANGE.max, help: "seed (init and data order)" },
  { key: "threads", kind: "int", min: 1, max: 256, help: "kernel threads" },
  { key: "precision", kind: "choice", choices: ["fp32", "bf16"], help: "matmul precision of the linear layers" },
];

/** model settings given as flags (validated by resolveModelConfig) */
export const MODEL_SETTINGS: readonly Setting[] = [
  { key: "model", kind: "choice", choices: ["gpt", "retro"], help: "gpt | retro" },
  { key: "d", kind: "int", min: 1, help: "model width" },
  { key: "layers", kind: "int", min: 1, help: "decoder layers" },
  { key: "heads", kind: "int", min: 1, help: "attention heads" },
  { key: "seq", kind: "int", min: 1, help: "sequence length" },
  { key: "k", kind: "int", min: 1, help: "neighbours per chunk" },
  { key: "r", kind: "int", min: 1, help: "tokens per neighbour (chunk + continuation)" },
  { key: "cca_layers", kind: "intList", help: "1-based CCA layers, e.g. 3,6" },
  { key: "enc_layers", kind: "int", min: 1, help: "encoder layers" },
  { key: "gate", kind: "num", help: "CCA gate (0 = the decoder alone)" },
  { key: "retrieval_rope", kind: "bool", negatable: true, help: "Retro: rotary positions in CCA and the encoder" },
  { key: "retrieval_null_kv", kind: "bool", negatable: true, help: "Retro: a learned null key/value in every CCA" },
];

export const flagOf = (key: string): string => key.replace(/_/g, "-").replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
const attrOf = (key: string): string => flagOf(key).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

const range = (s: Setting): Range => ({ min: s.min, max: s.max, above: s.above, below: s.below });

/** Add one flag per setting to `cmd`, the default of this command shown in the help. */
export function addSettingFlags(cmd: Command, settings: readonly Setting[], defaults: Record<string, unknown> = {}): Command {
  for (const s of settings) {
    const flag = flagOf(s.key), d = defaults[s.key];
    const help = s.help + (d !== undefined ? ` (default ${JSON.stringify(d)})` : "");
    if (s.kind === "bool") {
      cmd.option(`--${flag}`, help);
      if (s.negatable) cmd.option(`--no-${flag}`, `not --${flag}`);
      continue;
    }
    const parse: ((v: string) => unknown) | undefined = s.kind === "int" ? intFlag(`--${flag}`, range(s)) : s.kind === "num" ? numFlag(`--${flag}`, range(s))
      : s.kind === "intList" ? (v: string) => v.split(",").map((x) => checkInt(x.trim(), `--${flag}`, { min: 1 })) : undefined;
    const opt = new Option(`--${flag} <${s.kind === "choice" ? s.choices!.join("|") : s.kind === "intList" ? "list" : "n"}>`, help);
    if (s.kind === "choice") opt.choices(s.choices!);
    if (parse) opt.argParser(parse);
    cmd.addOption(opt);
  }
  return cmd;
}

/** The values the flags of `settings` were given (absent flags left out), keyed by setting key. */
export function settingValues(opts: Record<string, unknown>, settings: readonly Setting[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of settings) {
    const v = opts[attrOf(s.key)];
    if (v !== undefined) out[s.key] = v;
  }
  return out;
}

/** Check each setting's value in `c` (all must be present); the message names the key and what it must be. */
export function validateSettings(c: Record<string, unknown>, settings: readonly Setting[], what: string): void {
  for (const s of settings) {
    const v = c[s.key];
    const bad = (must: string) => { throw new RetroError("usage", `${what}: ${s.key} must be ${must}, got ${JSON.stringify(v)}`); };
    switch (s.kind) {
      case "bool":
        if (typeof v !== "boolean") bad("true or false");
        break;
      case "choice":
        if (!s.choices!.includes(v as string)) bad(s.choices!.map((x) => JSON.stringify(x)).join(" or "));
        break;
      case "intList":
        if (!Array.isArray(v) || v.some((x) => !Number.isInteger(x))) bad("a list of integers");
        break;
      case "int":
        checkInt(v, `${what}: ${s.key}`, range(s));
        break;
      case "num":
        checkNum(v, `${what}: ${s.key}`, range(s));
        break;
    }
  }
}
