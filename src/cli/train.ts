/** `retro train` (step 2) and `retro sft` (step 4): one training loop, flags generated from the settings tables. */
import { Option, type Command } from "commander";
import { train, type TrainResult } from "../train/trainer.ts";
import { DEFAULT_TRAIN, TRAIN_SETTINGS } from "../train/settings.ts";
import { MODEL_SETTINGS } from "../model/config.ts";
import { omitSettings, pickSettings } from "../util/settings.ts";
import { addSettingFlags, settingValues } from "./flags.ts";
import { DEFAULT_SFT_TRAIN, parseDataSpec } from "../sft/config.ts";
import { sft } from "../sft/sft.ts";
import { buildBundledSets } from "../sft/bundled.ts";
import { Database } from "../db/database.ts";
import { readUserJson } from "../util/fsx.ts";
import { collect, intFlag, numFlag, SEED_RANGE } from "./args.ts";
import { RetroError } from "../util/errors.ts";

/** flags over a --config file: settings at the top level, model settings under "model" */
function inputOf(o: Record<string, unknown>, what: string): Record<string, unknown> {
  const file: Record<string, unknown> = o.config ? readUserJson<Record<string, unknown>>(o.config as string, what) : {};
  const input: Record<string, unknown> = { ...file, ...settingValues(o, TRAIN_SETTINGS) };
  const model = { ...((file.model as Record<string, unknown>) ?? {}), ...settingValues(o, MODEL_SETTINGS) };
  if (Object.keys(model).length) input.model = model;
  for (const k of ["db", "init"]) if (o[k] !== undefined) input[k] = o[k];
  return input;
}

function report(r: TrainResult): void {
  console.log(
    JSON.stringify({ out: r.out, step: r.step, interrupted: r.interrupted, loss: r.lastLoss, eval: r.lastEval }),
  );
  if (r.interrupted) process.exit(130);
}

export function registerTrain(program: Command): void {
  const t = program
    .command("train")
    .description(
      "step 2: train GPT or Retro on a database (from scratch, Retro-fitting or GPT-fitting a checkpoint); resumable",
    )
    .requiredOption("--out <dir>", "run folder (config.json, metrics.jsonl, checkpoints/)")
    .option("--db <dir>", "database folder (required unless --config names it)")
    .option("--config <file>", "JSON train config (keys as in the run's config.json); flags override it")
    .option("--init <ckpt>", "start from a checkpoint (run or checkpoint folder): GPT into Retro = Retro-fitting")
    .option("--resume", "continue the run in --out from its latest checkpoint (starts it when there is none)")
    .option(
      "--stop-after <n>",
      "stop (with a checkpoint) after this step, as if interrupted",
      intFlag("--stop-after", { min: 1 }),
    );
  addSettingFlags(t, MODEL_SETTINGS);
  addSettingFlags(t, TRAIN_SETTINGS, DEFAULT_TRAIN);
  t.action(async (o) =>
    report(await train(o.out, inputOf(o, "train config"), { resume: Boolean(o.resume), stopAfter: o.stopAfter })),
  );

  const s = program
    .command("sft")
    .description(
      "step 4: instruction-tune a GPT or Retro checkpoint on a blend of conversation files (loss on the last " +
        "assistant turn; Retro with the CCA gate 0 unless --gate); resumable",
    )
    .requiredOption("--out <dir>", "run folder")
    .option("--init <ckpt>", "the checkpoint to tune (run or checkpoint folder); required unless resuming")
    .option(
      "--data <file[:weight]>",
      "chat JSONL ({messages: [{role, content}]}) or QA file (Megatron QA JSON, SQuAD, KILT, plain JSONL), with its " +
        "blend weight; repeatable",
      collect,
      [],
    )
    .option("--db <dir>", "database (default: the checkpoint's; its tokenizer is used, and its index when retrieving)")
    .option("--config <file>", "JSON config (keys as in the run's config.json); flags override it")
    .option("--system <text>", "system prompt (default: the paper's, Appendix C.1)")
    .option("--no-system", "no system prompt")
    .option(
      "--valid-fraction <x>",
      "share of each file (of ≥ 20 conversations) held out for the loss evaluation (default 0.05)",
      numFlag("--valid-fraction", { min: 0, below: 1 }),
    )
    .option("--resume", "continue the run in --out")
    .option(
      "--stop-after <n>",
      "stop (with a checkpoint) after this step, as if interrupted",
      intFlag("--stop-after", { min: 1 }),
    );
  addSettingFlags(s, pickSettings(MODEL_SETTINGS, ["gate"]));
  addSettingFlags(
    s,
    omitSettings(TRAIN_SETTINGS, ["freezeDecoder", "freezeDecoderSteps", "zeroCcaOut", "blend", "retrievalInit"]),
    DEFAULT_SFT_TRAIN,
  );
  s.action(async (o) => {
    const input = inputOf(o, "sft config");
    const data = (o.data as string[]).map(parseDataSpec);
    if (data.length) input.data = data;
    if (o.system === false) input.system = null;
    else if (typeof o.system === "string") input.system = o.system;
    if (o.validFraction !== undefined) input.validFraction = o.validFraction;
    if (!o.resume && !input.init) throw new RetroError("usage", "sft: --init CHECKPOINT is required");
    report(await sft(o.out, input, { resume: Boolean(o.resume), stopAfter: o.stopAfter }));
  });

  program
    .command("sft-data")
    .description(
      "step 4: build the bundled instruction set and held-out QA sets from WordNet, with evidence in --db (labelled " +
        "synthetic; see the README it writes)",
    )
    .requiredOption("--db <dir>", "database holding the bundled wordnet (passages are retrieved from it)")
    .requiredOption("--out <dir>", "folder for train-qa.json, train-chat.jsonl, qa-*.jsonl, README.md")
    .option("--max-train <n>", "instruction questions at most", intFlag("--max-train", { min: 1 }), 6000)
    .option("--max-held-out <n>", "held-out questions per task at most", intFlag("--max-held-out", { min: 1 }), 200)
    .option("--seed <n>", "seed of the held-out split", intFlag("--seed", SEED_RANGE), 7)
    .addOption(
      new Option(
        "--retriever <kind>",
        "passages from the database's own index, or BM25 over its chunks (built in memory)",
      )
        .choices(["index", "bm25"])
        .default("index"),
    )
    .action(async (o) => {
      const db = new Database(o.db);
      try {
        console.log(
          JSON.stringify(
            await buildBundledSets(db, o.out, {
              maxTrain: o.maxTrain,
              maxHeldOut: o.maxHeldOut,
              seed: o.seed,
              retriever: o.retriever,
            }),
          ),
        );
      } finally {
        db.close();
      }
    });
}
