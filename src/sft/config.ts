/** Instruction-tuning settings (the `sft` key of a run's config.json) and `retro sft`'s defaults. */
import * as path from "node:path";
import { RetroError } from "../util/errors.ts";
import { DEFAULT_TRAIN, type TrainSettings } from "../train/settings.ts";
import { sha256File } from "../util/fsx.ts";
import { requirePath } from "../util/fsx.ts";
import { SYSTEM_PROMPT } from "../prompt/format.ts";

export interface SftDataSpec {
  /** absolute path of a chat JSONL or QA file */
  path: string;
  /** blend weight (share of the drawn examples) */
  weight: number;
  /** SHA-256 of the file when the run started (a resumed run refuses a changed file) */
  sha256: string;
}

export interface SftSettings {
  data: SftDataSpec[];
  /** the system prompt (default: the paper's, Appendix C.1; null: none) */
  system: string | null;
  /** fraction of each file's conversations held out for the loss evaluation during tuning */
  validFraction: number;
}

/**
 * Sized for the bundled models (5M parameters, seq 256) on 2 cores: a few hundred steps of 8 conversations.
 * The paper's 43B run used lr 5e-6, batch 128, 1,000 steps; small models need a larger rate.
 */
export const DEFAULT_SFT_TRAIN: TrainSettings = {
  ...DEFAULT_TRAIN,
  steps: 400,
  lr: 3e-4,
  minLr: 3e-5,
  warmup: 20,
  evalEvery: 100,
  evalBatches: -1,
  saveEvery: 100,
};

/** `FILE[:WEIGHT]` → spec (the weight is the part after the last colon when it is a number) */
export function parseDataSpec(s: string): { path: string; weight: number } {
  const m = /^(.*):([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)$/i.exec(s);
  const file = m ? m[1] : s,
    weight = m ? Number(m[2]) : 1;
  if (!file) throw new RetroError("usage", `--data ${s}: no file named`);
  if (!(weight >= 0) || !Number.isFinite(weight))
    throw new RetroError("usage", `--data ${s}: the weight must be a number ≥ 0`);
  return { path: file, weight };
}

export function resolveSftSettings(input: {
  data: { path: string; weight: number }[];
  system?: string | null;
  validFraction?: number;
}): SftSettings {
  if (!input.data.length) throw new RetroError("usage", "sft: at least one --data FILE[:WEIGHT] is needed");
  const data = input.data.map((d) => {
    requirePath(d.path, "instruction data");
    return { path: path.resolve(d.path), weight: d.weight, sha256: sha256File(d.path) };
  });
  if (!data.some((d) => d.weight > 0)) throw new RetroError("usage", "sft: every --data weight is 0");
  const validFraction = input.validFraction ?? 0.05;
  if (!(validFraction >= 0 && validFraction < 1))
    throw new RetroError("usage", `sft: validFraction must be in [0, 1), got ${validFraction}`);
  return { data, system: input.system === undefined ? SYSTEM_PROMPT : input.system, validFraction };
}
