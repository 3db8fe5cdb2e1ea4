/** `retro train` (step 2): GPT or Retro, from scratch, Retro-fitting or GPT-fitting; resumable. */
import { Option, type Command } from "commander";
import { train } from "../train/trainer.ts";
import { readJson } from "../util/fsx.ts";
import { int, num } from "./args.ts";

export function registerTrain(program: Command): void {
  program.command("train")
    .description("step 2: train GPT or Retro on a database (from scratch, Retro-fitting or GPT-fitting a checkpoint); resumable")
    .requiredOption("--out <dir>", "run folder (config.json, metrics.jsonl, checkpoints/)")
    .option("--db <dir>", "database folder (required unless --config names it)")
    .option("--config <file>", "JSON train config (keys as in the run's config.json); flags override it")
    .addOption(new Option("--model <kind>", "gpt | retro").choices(["gpt", "retro"]))
    .option("--init <ckpt>", "start from a checkpoint (run or checkpoint folder): GPT into Retro = Retro-fitting")
    .option("--freeze-decoder", "Retro-fitting with the decoder frozen (only encoder and CCA train)")
    .option("--freeze-decoder-steps <n>", "Retro: decoder frozen for the first N steps, then unfrozen", int)
    .option("--retrieval-lr <x>", "Retro: learning-rate multiplier of the encoder and CCA", num)
    .option("--zero-cca-out", "Retro, fresh retrieval weights: CCA output projections start at 0 (a Retro-fit starts at its GPT)")
    .option("--no-zero-cca-out", "CCA output projections start N(0, 0.02) like the other weights")
    .option("--retrieval-rope", "Retro: rotary positions in CCA and the encoder (model config retrieval_rope)")
    .option("--no-retrieval-rope", "Retro: no rotary positions in the retrieval path")
    .option("--resume", "continue the run in --out from its latest checkpoint (starts it when there is none)")
    .option("--d <n>", "model width", int).option("--layers <n>", "decoder layers", int).option("--heads <n>", "attention heads", int)
    .option("--seq <n>", "sequence length", int).option("--k <n>", "neighbours per chunk", int).option("--r <n>", "tokens per neighbour", int)
    .option("--cca-layers <list>", "1-based CCA layers, e.g. 3,6").option("--enc-layers <n>", "encoder layers", int).option("--gate <g>", "CCA gate", num)
    .option("--batch <n>", "sequences per micro-batch", int).option("--accum <n>", "micro-batches per step", int).option("--steps <n>", "optimizer steps", int)
    .option("--lr <f>", "peak learning rate", num).option("--min-lr <f>", "final learning rate", num).option("--warmup <n>", "warmup steps", int)
    .option("--weight-decay <f>", "AdamW weight decay", num).option("--clip <f>", "gradient-norm clip", num)
    .option("--eval-every <n>", "steps between evaluations", int).option("--eval-batches <n>", "validation batches per evaluation (0 = all)", int)
    .option("--save-every <n>", "steps between checkpoints", int).option("--seed <n>", "seed (init and data order)", int).option("--threads <n>", "kernel threads", int)
    .addOption(new Option("--precision <p>", "matmul precision of the linear layers").choices(["fp32", "bf16"]))
    .option("--stop-after <n>", "stop (with a checkpoint) after this step, as if interrupted", int)
    .action(async (o) => {
      const file: Record<string, unknown> = o.config ? readJson<Record<string, unknown>>(o.config, "train config") : {};
      const model: Record<string, unknown> = { ...((file.model as Record<string, unknown>) ?? {}) };
      const m = { model: o.model, retrieval_rope: o.retrievalRope, d: o.d, layers: o.layers, heads: o.heads, seq: o.seq, k: o.k, r: o.r, enc_layers: o.encLayers, gate: o.gate,
        cca_layers: o.ccaLayers ? String(o.ccaLayers).split(",").map(int) : undefined };
      for (const [k, v] of Object.entries(m)) if (v !== undefined) model[k] = v;
      const flags: Record<string, unknown> = { db: o.db, init: o.init, freezeDecoder: o.freezeDecoder, freezeDecoderSteps: o.freezeDecoderSteps,
        retrievalLr: o.retrievalLr, zeroCcaOut: o.zeroCcaOut, batch: o.batch, accum: o.accum, steps: o.steps, lr: o.lr, minLr: o.minLr,
        warmup: o.warmup, weightDecay: o.weightDecay, clip: o.clip, evalEvery: o.evalEvery, evalBatches: o.evalBatches, saveEvery: o.saveEvery, seed: o.seed, threads: o.threads, precision: o.precision };
      const input: Record<string, unknown> = { ...file };
      for (const [k, v] of Object.entries(flags)) if (v !== undefined) input[k] = v;
      if (Object.keys(model).length) input.model = model;
      const r = await train(o.out, input, { resume: Boolean(o.resume), stopAfter: o.stopAfter });
      console.log(JSON.stringify({ out: r.out, step: r.step, interrupted: r.interrupted, loss: r.lastLoss, eval: r.lastEval }));
      if (r.interrupted) process.exit(130);
    });
}
