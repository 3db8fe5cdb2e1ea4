/** `retro eval …` (step 3): perplexity on the held-out split, with the retrieval controls. */
import type { Command } from "commander";
import { evalControls, type ControlReport } from "../train/controls.ts";
import { evaluate } from "../train/evaluate.ts";
import { checkModelAgainstDb } from "../train/loader.ts";
import * as fs from "node:fs";
import { loadModel, openCheckpoint } from "../model/checkpoint.ts";
import { relativeDifference, sequenceLogits } from "../model/logits.ts";
import { RetroError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/fsx.ts";
import { intFlag, numFlag, SEED_RANGE } from "./args.ts";
import { registerQa } from "./qa.ts";

export function registerEval(program: Command): void {
  const evalCmd = program.command("eval").description("steps 3 and 5: perplexity, question answering, scoring");
  evalCmd
    .command("ppl")
    .description(
      "perplexity on the database's held-out split (Retro: with retrieval, or --gate 0 for the decoder alone)",
    )
    .requiredOption("--ckpt <dir>", "run folder (its latest checkpoint) or checkpoint folder")
    .option("--db <dir>", "database folder (default: the one the checkpoint's run names)")
    .option("--gate <g>", "CCA gate for this evaluation (Retro)", numFlag("--gate"))
    .option("--batch <n>", "sequences per batch", intFlag("--batch", { min: 1 }), 8)
    .option(
      "--batches <n>",
      "evaluate only the first N batches (default: the whole split)",
      intFlag("--batches", { min: 1 }),
    )
    .option("--json", "print one JSON line")
    .option(
      "--controls",
      "does the model read its neighbours? loss with own / another sample's / random / no neighbours, RETRO's " +
        "overlap buckets, target-in-neighbours split",
    )
    .option("--seed <n>", "seed of the random neighbours (--controls)", intFlag("--seed", SEED_RANGE), 1)
    .action((o) => {
      const { model, dir, db: d } = openCheckpoint(o.ckpt, { db: o.db });
      const cfg = model.config;
      checkModelAgainstDb(cfg, d);
      if (o.controls) {
        const c = evalControls(model, d, { batch: o.batch, seed: o.seed });
        if (o.json) console.log(JSON.stringify({ ckpt: dir, ...c }));
        else console.log(formatControls(c));
        return;
      }
      const r = evaluate(model, d, { batch: o.batch, batches: o.batches, gate: o.gate, showProgress: !o.json });
      if (o.json) console.log(JSON.stringify({ ckpt: dir, model: cfg.model, ...r }));
      else
        console.log(
          `${cfg.model}${r.gate !== null ? ` (gate ${r.gate})` : ""}: loss ${r.loss.toFixed(4)} nats/token, ` +
            `perplexity ${r.ppl.toFixed(2)}, ${r.tokens} held-out tokens`,
        );
    });
  evalCmd
    .command("logits")
    .description(
      "the logits of a token sequence (a GPT, or a Retro's decoder with --gate 0), written as raw little-endian " +
        "float32 [T, vocab] as ../shared/peers/hf_gpt2.py writes them; --compare checks them against such a file " +
        "(exit 1 beyond --tol)",
    )
    .requiredOption("--ckpt <dir>", "run folder, checkpoint folder, or hf:DIR")
    .requiredOption("--ids <list>", "token ids, comma-separated", parseIds)
    .option(
      "--gate <g>",
      "a Retro's CCA gate: 0 (its decoder alone) is the only one without neighbours",
      numFlag("--gate", { min: 0, max: 0 }),
    )
    .option("--out <file>", "write the logits here (atomically)")
    .option("--compare <file>", "logits to compare with (float32 [T, vocab]): max |difference| / max |logit|")
    .option("--tol <x>", "largest relative difference --compare accepts", numFlag("--tol", { min: 0 }), 1e-5)
    .action((o) => {
      const { model, dir } = loadModel(o.ckpt);
      if (o.gate !== undefined) model.gate = o.gate;
      const r = sequenceLogits(model, o.ids as number[]);
      if (o.out) writeFileAtomic(o.out, Buffer.from(r.logits.buffer, r.logits.byteOffset, r.logits.byteLength));
      let compare: { file: string; rel: number; ok: boolean } | undefined;
      if (o.compare) {
        const raw = readFileOrFail(o.compare, "logits to compare");
        if (raw.length !== r.logits.byteLength)
          throw new RetroError(
            "mismatch",
            `${o.compare}: ${raw.length} bytes, expected ${r.logits.byteLength} (float32 [${o.ids.length}, ` +
              `${model.config.vocab}])`,
          );
        const theirs = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
        const rel = relativeDifference(r.logits, theirs);
        compare = { file: o.compare, rel, ok: rel <= o.tol };
      }
      console.log(
        JSON.stringify({
          ckpt: dir,
          tokens: o.ids.length,
          vocab: model.config.vocab,
          loss: r.loss,
          ...(compare ? { compare } : {}),
        }),
      );
      if (compare && !compare.ok) {
        console.error(`logits differ from ${o.compare} by ${compare.rel.toExponential(2)} (> --tol ${o.tol})`);
        process.exitCode = 1;
      }
    });
  registerQa(evalCmd);
}

function parseIds(v: string): number[] {
  const ids = v.split(",").map((x) => Number(x.trim()));
  if (!ids.length || ids.some((x) => !Number.isInteger(x) || x < 0))
    throw new RetroError("usage", `--ids ${v}: a comma-separated list of token ids`);
  return ids;
}

function readFileOrFail(file: string, what: string): Buffer {
  if (!fs.existsSync(file)) throw new RetroError("notFound", `${what}: ${file} not found`);
  return fs.readFileSync(file);
}

function formatControls(c: ControlReport): string {
  const f = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(4));
  const lines = [`${c.model}: held-out loss over ${c.tokens} tokens (perplexity in brackets)`];
  for (const [k, v] of Object.entries(c.loss))
    lines.push(`  neighbours ${k.padEnd(8)} ${f(v)}  (${Math.exp(v).toFixed(2)})`);
  lines.push(
    `  positions that read no neighbours (first m-1): ${f(c.noNeighboursRead.loss)} over ` +
      `${c.noNeighboursRead.tokens} tokens`,
  );
  for (const b of c.overlap)
    lines.push(
      `  chunks with overlap <= ${(100 * b.upTo).toFixed(1).padStart(5)} %: ${f(b.loss)} over ${b.chunks} chunks`,
    );
  lines.push(
    `  target in the neighbours read: ${f(c.targetInNeighbours.yes.loss)} (${c.targetInNeighbours.yes.tokens} ` +
      `tokens); not in them: ${f(c.targetInNeighbours.no.loss)} (${c.targetInNeighbours.no.tokens})`,
  );
  if (c.inContext)
    lines.push(
      `  in-context baseline (neighbours' text before up to ${c.inContext.context} context tokens): ` +
        `${f(c.inContext.with)} with, ${f(c.inContext.without)} without, over ${c.inContext.tokens} tokens`,
    );
  return lines.join("\n");
}
