/** The `retro` command line. Every failure caused by input prints one line and a stable exit code. */
import * as fs from "node:fs";
import { Command, Option } from "commander";
import { buildDatabase, saveManifest, STAGES, stageQuery, samplesIn, type Stage } from "../db/build.ts";
import { Database } from "../db/database.ts";
import { resolveConfig } from "../db/config.ts";
import { readJson } from "../util/fsx.ts";
import { RetroError } from "../util/errors.ts";
import type { DatasetSpec } from "../data/sources.ts";
import { CORPORA, corpusDataset, installCorpora, isInstalled } from "../data/catalogue.ts";
import { inspectSample, formatStats } from "../db/inspect.ts";
import { runParity } from "../model/parity.ts";
import * as path from "node:path";
import { train } from "../train/trainer.ts";
import { evalControls, type ControlReport } from "../train/controls.ts";
import { evaluate } from "../train/evaluate.ts";
import { checkModelAgainstDb } from "../train/loader.ts";
import { plotRuns } from "../train/plot.ts";
import { loadModel } from "../model/checkpoint.ts";
import { loadEngine, type EngineKind } from "../engine/native.ts";

const program = new Command();
program.name("retro").description("Retro / InstructRetro: retrieval-augmented language models in TypeScript").showHelpAfterError();

const db = program.command("db").description("step 1: the retrieval database");

function collect(v: string, prev: string[]) {
  return [...prev, v];
}

const corpus = program.command("corpus").description("larger offline corpora (Debian packages) usable as datasets");
corpus.command("list").description("the installable corpora, their licences and whether they are installed").action(() => {
  for (const c of CORPORA) {
    process.stdout.write(`${c.name.padEnd(8)} ${(isInstalled(c) ? "installed" : "-").padEnd(10)} ${c.debian.padEnd(15)} ${c.licence.padEnd(14)} ${c.description}\n`);
  }
  process.stdout.write(`\nuse one in a database: retro db build --corpus kjv --corpus web:0 ...  (NAME[:WEIGHT]; weight 0 = retrieval-only)\n`);
});
corpus.command("install").description("install corpora with apt-get (as root)").argument("<names...>").action((names: string[]) => {
  installCorpora(names);
});

db.command("build")
  .description("ingest a corpus, tokenize, chunk, embed, build the ANN index and precompute neighbours (resumable)")
  .requiredOption("--out <dir>", "database folder")
  .option("--config <file>", "JSON config (see README); flags below override it")
  .option("--text <path>", "add a plain-text file or folder as a dataset (repeatable)", collect, [])
  .option("--jsonl <path>", "add a JSONL file as a dataset (repeatable)", collect, [])
  .option("--corpus <name[:weight]>", "add an installed offline corpus (retro corpus list) as a dataset (repeatable)", collect, [])
  .option("--field <name>", "JSONL text field", "text")
  .option("--skip-bad-lines", "skip malformed JSONL lines (counted) instead of failing")
  .option("--tokenizer <spec>", "gpt2 | bpe:<vocab size>")
  .option("--chunk-length <n>", "tokens per chunk", (v) => parseInt(v, 10))
  .option("--seq <n>", "sample length for the neighbour query", (v) => parseInt(v, 10))
  .option("--index <description>", 'ANN index description, e.g. "HNSW32,SQfp16"')
  .option("--seed <n>", "seed of the held-out split and samplers", (v) => parseInt(v, 10))
  .option("--valid-fraction <f>", "share of documents held out per dataset", parseFloat)
  .addOption(new Option("--until <stage>", "stop after this stage").choices(STAGES))
  .action(async (o) => {
    const cfg: Record<string, unknown> = o.config ? readJson<Record<string, unknown>>(o.config, "config") : {};
    const sets: DatasetSpec[] = [];
    for (const p of o.text as string[]) sets.push({ name: `text${sets.length}`, source: "text", path: p, weight: 1 });
    for (const p of o.jsonl as string[]) sets.push({ name: `jsonl${sets.length}`, source: "jsonl", path: p, field: o.field, weight: 1, onBadLine: o.skipBadLines ? "skip" : "fail" });
    for (const c of o.corpus as string[]) {
      const [name, w] = c.split(":");
      const weight = w === undefined ? 1 : Number(w);
      if (!(weight >= 0)) throw new RetroError("usage", `--corpus ${c}: the weight must be a number ≥ 0`);
      sets.push(corpusDataset(name, weight));
    }
    if (sets.length) cfg.datasets = sets;
    if (o.tokenizer) {
      const m = /^(gpt2|bpe(?::(\d+))?)$/.exec(o.tokenizer);
      if (!m) throw new RetroError("usage", `--tokenizer: expected gpt2 or bpe:<size>, got "${o.tokenizer}"`);
      cfg.tokenizer = m[1] === "gpt2" ? { kind: "gpt2" } : m[2] ? { kind: "bpe", vocabSize: Number(m[2]) } : { kind: "bpe" };
    }
    if (o.chunkLength) cfg.chunkLength = o.chunkLength;
    if (o.seed !== undefined) cfg.seed = o.seed;
    if (o.validFraction !== undefined) cfg.validFraction = o.validFraction;
    if (o.index) cfg.index = { ...((cfg.index as object) ?? {}), description: o.index };
    if (o.seq) cfg.query = { ...((cfg.query as object) ?? {}), seq: o.seq };
    const man = await buildDatabase(o.out, cfg, { until: o.until as Stage | undefined });
    console.log(formatStats(man));
  });

db.command("query")
  .description("precompute (or resume) the neighbours of every sample chunk of a split")
  .requiredOption("--db <dir>", "database folder")
  .option("--split <name>", "train | valid", "valid")
  .action(async (o) => {
    const d = new Database(o.db);
    await stageQuery(o.db, resolveConfig(d.config), d, o.split);
    saveManifest(o.db, d.manifest);
    console.log(`neighbours of ${samplesIn(d, o.split, d.config.query.seq)} ${o.split} samples ready`);
  });

db.command("inspect")
  .description("print sample chunks with their retrieved neighbours as text")
  .requiredOption("--db <dir>", "database folder")
  .option("--split <name>", "train | valid", "valid")
  .option("--sample <list>", "sample indices, comma-separated (e.g. 0,40,120)", "0")
  .option("--chunks <n>", "chunks of the sample to show", (v) => parseInt(v, 10), 2)
  .option("--k <n>", "neighbours per chunk", (v) => parseInt(v, 10), 2)
  .option("--chars <n>", "characters of text per item", (v) => parseInt(v, 10), 300)
  .action((o) => {
    const d = new Database(o.db);
    const samples = String(o.sample).split(",").map((x) => {
      const i = Number(x);
      if (!Number.isInteger(i) || i < 0) throw new RetroError("usage", `--sample: "${x}" is not a sample index`);
      return i;
    });
    console.log(samples.map((i) => inspectSample(d, o.split, i, o.chunks, o.k, o.chars)).join("\n\n"));
  });

db.command("stats")
  .description("counts, sizes and settings of a database")
  .requiredOption("--db <dir>", "database folder")
  .action((o) => {
    const d = new Database(o.db);
    console.log(formatStats(d.manifest, o.db));
  });

program.command("parity")
  .description("check the engine against a PyTorch dump (torch_retro_step.py with \"dump\"): max relative error of loss, logits, gradients")
  .argument("<dump>", "safetensors file written by the peer")
  .option("--config <json>", "model config as JSON, when the dump's metadata has none")
  .addOption(new Option("--engine <kind>", "engine build (default: RETRO_ENGINE or portable)").choices(["blas", "portable"]))
  .option("--all", "print every gradient's error")
  .action((dump: string, o) => {
    const report = runParity(dump, { config: o.config ? (JSON.parse(o.config) as Record<string, unknown>) : undefined, engine: loadEngine(o.engine as EngineKind | undefined) });
    const c = report.config;
    console.log(`dump      ${dump} (${report.peer}; ${c.model}, vocab ${c.vocab}, d ${c.d}, layers ${c.layers}${c.model === "retro" ? `, cca ${c.cca_layers.join(",")}, gate ${c.gate}` : ""})`);
    console.log(`loss      ours ${report.loss.ours.toFixed(7)}  theirs ${report.loss.theirs.toFixed(7)}  rel error ${report.loss.rel.toExponential(2)}`);
    console.log(`logits    max rel error ${report.logitsRel.toExponential(2)}`);
    const within = report.grads.filter((g) => g.rel <= 1e-4).length;
    console.log(`gradients ${within}/${report.grads.length} within 1e-4; worst gradient ${report.gradWorst} rel error ${report.gradRel.toExponential(2)}`);
    for (const g of report.grads) if (o.all || g.rel > 1e-4) console.log(`  ${g.name.padEnd(32)} rel ${g.rel.toExponential(2)}  (max |grad| ${g.maxAbs.toExponential(2)})`);
  });

const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new RetroError("usage", `not an integer: ${v}`);
  return n;
};
const num = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new RetroError("usage", `not a number: ${v}`);
  return n;
};

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

const evalCmd = program.command("eval").description("step 3: evaluation");
evalCmd.command("ppl")
  .description("perplexity on the database's held-out split (Retro: with retrieval, or --gate 0 for the decoder alone)")
  .requiredOption("--ckpt <dir>", "run folder (its latest checkpoint) or checkpoint folder")
  .requiredOption("--db <dir>", "database folder")
  .option("--gate <g>", "CCA gate for this evaluation (Retro)", num)
  .option("--batch <n>", "sequences per batch", int, 8)
  .option("--batches <n>", "evaluate only the first N batches (default: the whole split)", int)
  .option("--json", "print one JSON line")
  .option("--controls", "does the model read its neighbours? loss with own / another sample's / random / no neighbours, RETRO's overlap buckets, target-in-neighbours split")
  .option("--seed <n>", "seed of the random neighbours (--controls)", int, 1)
  .action((o) => {
    const d = new Database(o.db);
    const { model, dir } = loadModel(o.ckpt);
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
    else console.log(`${cfg.model}${r.gate !== null ? ` (gate ${r.gate})` : ""}: loss ${r.loss.toFixed(4)} nats/token, perplexity ${r.ppl.toFixed(2)}, ${r.tokens} held-out tokens`);
  });

function formatControls(c: ControlReport): string {
  const f = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(4));
  const lines = [`${c.model}: held-out loss over ${c.tokens} tokens (perplexity in brackets)`];
  for (const [k, v] of Object.entries(c.loss)) lines.push(`  neighbours ${k.padEnd(8)} ${f(v)}  (${Math.exp(v).toFixed(2)})`);
  lines.push(`  positions that read no neighbours (first m-1): ${f(c.noNeighboursRead.loss)} over ${c.noNeighboursRead.tokens} tokens`);
  for (const b of c.overlap) lines.push(`  chunks with overlap <= ${(100 * b.upTo).toFixed(1).padStart(5)} %: ${f(b.loss)} over ${b.chunks} chunks`);
  lines.push(`  target in the neighbours read: ${f(c.targetInNeighbours.yes.loss)} (${c.targetInNeighbours.yes.tokens} tokens); not in them: ${f(c.targetInNeighbours.no.loss)} (${c.targetInNeighbours.no.tokens})`);
  return lines.join("\n");
}

program.command("plot")
  .description("render loss / perplexity curves of one or more runs (metrics.jsonl) as SVG, and PNG")
  .argument("<runs...>", "run folders; NAME=DIR sets the legend name")
  .requiredOption("--out <file>", "output .svg (a .png is written beside it)")
  .option("--title <text>", "chart title", "retro-ts")
  .option("--no-png", "SVG only")
  .action(async (runs: string[], o) => {
    const files = await plotRuns(runs.map((r) => (r.includes("=") ? { name: r.slice(0, r.indexOf("=")), dir: r.slice(r.indexOf("=") + 1) } : { name: path.basename(path.resolve(r)), dir: r })), o.out, { title: o.title, png: o.png });
    console.log(files.join("\n"));
  });

// RETRO_RUSAGE=FILE: write this process's peak RSS and CPU time to FILE at exit (used by bench:db)
if (process.env.RETRO_RUSAGE) {
  const file = process.env.RETRO_RUSAGE;
  process.on("exit", () => {
    const u = process.resourceUsage();
    fs.writeFileSync(file, JSON.stringify({ maxRssMiB: u.maxRSS / 1024, userS: u.userCPUTime / 1e6, systemS: u.systemCPUTime / 1e6 }));
  });
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof RetroError) {
    process.stderr.write(`retro: error: ${e.message}\n`);
    process.exit(e.code);
  }
  throw e;
}
