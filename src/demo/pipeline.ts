/**
 * `retro demo`: the five pipeline steps on the bundled corpus in one command, ending in DIR/report.md.
 *
 *   1. database (bundled corpus, default config with BM25)    → DIR/db (or --db, an existing one)
 *   2. GPT pretraining, then GPT-fitting and Retro-fitting it on the same tokens (same seed, same steps)
 *   3. held-out perplexity with the controls (another sample's / random / no neighbours; overlap buckets)
 *   4. the bundled WordNet instruction set; instruction tuning of both fits (Retro with the gate at 0)
 *   5. zero-shot QA on the held-out sets: passages in the prompt, Retro's encoder variant, closed book
 * Every stage is resumable and a re-run reuses what is finished (results cached under DIR/results) unless
 * `fresh`. Sizes fit ~15 minutes on 2 cores from a fresh clone; the report states them.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { buildDatabase } from "../db/build.ts";
import { defaultConfig, isBm25, type DbConfig } from "../db/config.ts";
import { Database } from "../db/database.ts";
import { Retriever } from "../db/retriever.ts";
import { formatStats } from "../db/inspect.ts";
import { loadModel, readCheckpointConfig, resolveCheckpointDir } from "../model/checkpoint.ts";
import { paramSpecs } from "../model/params.ts";
import type { ModelConfig } from "../model/config.ts";
import { train } from "../train/trainer.ts";
import { evalControls, type ControlReport } from "../train/controls.ts";
import { evaluate } from "../train/evaluate.ts";
import { plotBars, plotRuns } from "../train/plot.ts";
import { buildBundledSets, type BundledCounts } from "../sft/bundled.ts";
import { sft } from "../sft/sft.ts";
import { evalQa, type QaReport, type QaVariant } from "../qa/evaluate.ts";
import { readQaFile } from "../qa/formats.ts";
import { Generator } from "../generate/generate.ts";
import { readJson, writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";
import { log } from "../util/progress.ts";

export interface DemoOptions {
  out: string;
  /** an existing database to use instead of building DIR/db */
  db?: string;
  fresh?: boolean;
  /** sizes (the defaults fit ~15 minutes on 2 cores) */
  pretrainSteps?: number;
  fitSteps?: number;
  sftSteps?: number;
  qaQuestions?: number;
  /** for tests: another database config (it needs a dataset named "wordnet" in WordNet's line format) */
  dbConfig?: unknown;
  /** for tests: model settings over the defaults (d, layers, heads, seq, r) */
  model?: Record<string, unknown>;
  threads?: number;
}

type QaRow = DemoSummary["qa"][number] & { questions_per_s: number; truncated: number };

export interface DemoSummary {
  report: string;
  ppl: Record<string, number>;
  qa: { model: string; variant: QaVariant; set: string; exact_match: number; f1: number; rouge_gm?: number }[];
}

/** a stage's result cached as JSON: computed once, reused by a re-run */
async function cached<T>(file: string, fresh: boolean, make: () => Promise<T> | T): Promise<T> {
  if (!fresh && fs.existsSync(file)) return readJson<T>(file, "demo result");
  const v = await make();
  writeJsonAtomic(file, v);
  return JSON.parse(JSON.stringify(v)) as T; // what a re-run reads back

}

/** instruction-tuning steps of each model (sized, with the rest, to ~15 minutes on 2 cores) */
export const DEMO_SFT_STEPS = 120;

/**
 * The bundled corpus's default database with BM25 neighbours: lexical retrieval is what paid on real text
 * (experiments/parallel-bibles.ts: −23.4 % vs −1.3 % with the dense LSA index), and it builds without fitting
 * an embedder.
 */
export function demoDbConfig(): DbConfig {
  return { ...defaultConfig(), index: { ...defaultConfig().index, description: "BM25" } };
}

const STAGES = 7;
const stage = (i: number, what: string) => log(`\n== demo ${i}/${STAGES}: ${what}`);

export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  const out = path.resolve(o.out), fresh = Boolean(o.fresh);
  const P = o.pretrainSteps ?? 400, F = o.fitSteps ?? 150, S = o.sftSteps ?? DEMO_SFT_STEPS, Q = o.qaQuestions ?? 100;
  // --fresh starts over, the demo's own database included (never a --db given)
  if (fresh) for (const d of ["gpt", "gpt-fit", "retro-fit", "sft-gpt", "sft-retro", "results", "data", ...(o.db ? [] : ["db"])]) fs.rmSync(path.join(out, d), { recursive: true, force: true });
  fs.mkdirSync(path.join(out, "results"), { recursive: true });
  const res = (f: string) => path.join(out, "results", f);
  const times: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const v = await f();
    times[name] = (performance.now() - t0) / 1000;
    return v;
  };

  stage(1, "retrieval database (bundled corpus)");
  const dbDir = o.db ? path.resolve(o.db) : path.join(out, "db");
  if (!o.db) await timed("database", () => buildDatabase(dbDir, o.dbConfig ?? demoDbConfig()));
  const db = new Database(dbDir);
  const run = (n: string) => path.join(out, n);
  const quiet = { evalEvery: 100, saveEvery: 100, ...(o.threads ? { threads: o.threads } : {}) };
  const layers = (o.model?.layers as number | undefined) ?? 4;
  // r goes to the GPT too: its learned positions (max(seq, r)) must be the Retro-fit's
  try {
    stage(2, `GPT pretraining (${P} steps), then GPT-fitting and Retro-fitting it on the same tokens (${F} steps each)`);
    await timed("GPT pretraining", () => train(run("gpt"), { db: dbDir, model: { model: "gpt", ...o.model }, steps: P, ...quiet }, { resume: true }));
    const fit = { db: dbDir, init: run("gpt"), steps: F, lr: 3e-4, minLr: 3e-5, warmup: 20, ...quiet };
    await timed("GPT-fitting", () => train(run("gpt-fit"), fit, { resume: true }));
    await timed("Retro-fitting", () => train(run("retro-fit"), { ...fit, model: { model: "retro", cca_layers: layers >= 4 ? [2, 4] : [layers] } }, { resume: true }));

    stage(3, "held-out perplexity and the retrieval controls");
    // the fits get the controls (the overlap buckets compare them chunk for chunk); the pretrained GPT its perplexity
    const gptPpl = await cached(res("ppl-gpt.json"), fresh, () => evaluate(loadModel(run("gpt")).model, db, { batch: 8 }).ppl);
    const controls = await timed("perplexity", async () => {
      const c: Record<string, ControlReport> = {};
      for (const n of ["gpt-fit", "retro-fit"]) c[n] = await cached(res(`controls-${n}.json`), fresh, () => evalControls(loadModel(run(n)).model, db, { batch: 8 }));
      return c;
    });
    const ppl: Record<string, number> = {
      GPT: gptPpl, "GPT-fitting": controls["gpt-fit"].ppl.own, "Retro-fitting": controls["retro-fit"].ppl.own,
      "Retro-fitting, another sample's neighbours": controls["retro-fit"].ppl.another!, "Retro-fitting, random neighbours": controls["retro-fit"].ppl.random!,
      "Retro-fitting, gate 0 (no neighbours)": controls["retro-fit"].ppl.none!,
    };

    stage(4, "instruction data (bundled WordNet) and instruction tuning of both fits");
    const dataDir = path.join(out, "data");
    const counts = await cached<BundledCounts>(res("data.json"), fresh, () => buildBundledSets(db, dataDir, { retriever: "bm25", maxTrain: 6000, maxHeldOut: Q }));
    const sftData = [{ path: path.join(dataDir, "train-qa.json"), weight: 1 }, { path: path.join(dataDir, "train-chat.jsonl"), weight: 0.25 }];
    // no system prompt: the paper's takes 65 of these models' 256 positions
    for (const [name, from] of [["sft-gpt", "gpt-fit"], ["sft-retro", "retro-fit"]]) {
      await timed(`instruction tuning ${from}`, () => sft(run(name), { init: run(from), db: dbDir, data: sftData, system: null, steps: S, batch: 8, evalEvery: 50, saveEvery: 50, ...(o.threads ? { threads: o.threads } : {}) }, { resume: true }));
    }

    stage(5, "zero-shot question answering (passages by BM25 over the database's chunks)");
    const sets = ["synonym", "word", "define"].map((t) => ({ name: t, items: readQaFile(path.join(dataDir, `qa-${t}.jsonl`)).items.slice(0, Q) }));
    const qa = await timed("question answering", () => cached(res("qa.json"), fresh, async () => {
      const retriever = await Retriever.bm25(db);
      const rows: QaRow[] = [];
      for (const [label, dir] of [["InstructGPT", "sft-gpt"], ["InstructRetro", "sft-retro"]]) {
        const { model } = loadModel(run(dir));
        const variants: QaVariant[] = model.isRetro ? ["rag", "encoder", "none"] : ["rag", "none"];
        for (const set of sets) {
          for (const variant of variants) {
            const r: QaReport = await evalQa(model, db.tokenizer, retriever, set.items, { variant, passages: "retrieve", topK: 2, system: null, rouge: set.name === "define", showProgress: true });
            rows.push({ model: label, variant, set: set.name, exact_match: r.exact_match, f1: r.f1, rouge_gm: r.rouge_gm, questions_per_s: r.questions_per_s, truncated: r.truncated });
          }
        }
      }
      return rows;
    }));

    stage(6, "generation with citations");
    const sample = await cached(res("generation.json"), fresh, async () => {
      const { model } = loadModel(run("retro-fit"));
      const gen = new Generator(model, db.tokenizer, await Retriever.open(db));
      const prompt = "Mr. Speaker, Mr. Vice President, Members of Congress, the state of our Union";
      const cites: string[] = [];
      let text = "";
      for await (const ev of gen.stream([prompt], { maxTokens: 100, temperature: 0.8, topP: 0.9, seed: 1 })) {
        if (ev.type === "text") text += ev.text;
        if (ev.type === "retrieval") for (const n of ev.neighbours) cites.push(`chunk ${ev.chunk} read ${n.dataset} document ${n.document} (chunk ${n.chunk}, score ${n.score.toFixed(3)}): ${n.text.replace(/\s+/g, " ").slice(0, 120)}…`);
      }
      return { prompt, text, cites };
    });

    stage(7, "report");
    const figs = path.join(out, "figures");
    fs.mkdirSync(figs, { recursive: true });
    await plotRuns([{ name: "GPT", dir: run("gpt") }, { name: "GPT-fitting", dir: run("gpt-fit") }, { name: "Retro-fitting", dir: run("retro-fit") }], path.join(figs, "curves.svg"), { title: "pretraining, then GPT-fitting vs Retro-fitting (same tokens)" });
    const buckets: { group: string; series: string; value: number }[] = [];
    for (const [label, n] of [["GPT-fitting", "gpt-fit"], ["Retro-fitting", "retro-fit"]]) {
      for (const b of controls[n].overlap) buckets.push({ group: `overlap ≤ ${(100 * b.upTo).toFixed(1)} %`, series: label, value: b.loss });
    }
    await plotBars(buckets, path.join(figs, "overlap.svg"), { title: "held-out loss by overlap with the neighbours (RETRO §2.6)", yTitle: "loss (nats/token)", zero: false });
    await plotBars(qa.filter((r) => r.set !== "define").map((r) => ({ group: `${r.set}`, series: `${r.model} ${r.variant}`, value: r.f1 })), path.join(figs, "qa.svg"), { title: "held-out QA after instruction tuning (F1)", yTitle: "token F1 (0–100)" });
    const report = path.join(out, "report.md");
    writeFileAtomic(report, reportText({ out, dbDir, db, P, F, S, Q, ppl, controls, counts, qa, sample, times }));
    return { report, ppl, qa };
  } finally {
    db.close();
  }
}

function reportText(a: {
  out: string; dbDir: string; db: Database; P: number; F: number; S: number; Q: number; ppl: Record<string, number>;
  controls: Record<string, ControlReport>; counts: BundledCounts; qa: QaRow[];
  sample: { prompt: string; text: string; cites: string[] }; times: Record<string, number>;
}): string {
  const rel = (p: string) => path.relative(a.out, p) || ".";
  const f1 = (x: number) => x.toFixed(1);
  const sets = ["synonym", "word", "define"];
  // the models as trained (their checkpoints' configs; the run's batch)
  const gc = readCheckpointConfig(resolveCheckpointDir(path.join(a.out, "gpt"))), rc = readCheckpointConfig(resolveCheckpointDir(path.join(a.out, "retro-fit")));
  const batch = readJson<{ batch: number }>(path.join(a.out, "gpt", "config.json"), "run config").batch;
  const rows = [...new Set(a.qa.map((r) => `${r.model}\u0000${r.variant}`))];
  const qaTable = [
    "| model | passages | synonym EM / F1 | word EM / F1 | define ROUGE gm | questions/s |",
    "|---|---|---|---|---|---|",
    ...rows.map((row) => {
      const [model, variant] = row.split("\u0000");
      const cell = (s: string) => a.qa.find((r) => r.model === model && r.variant === variant && r.set === s);
      const qps = a.qa.filter((r) => r.model === model && r.variant === variant).reduce((x, r, _, l) => x + r.questions_per_s / l.length, 0);
      const what = variant === "rag" ? "top-2 in the prompt" : variant === "encoder" ? "top-2 in the prompt and the encoder (gate 1)" : "none (closed book)";
      return `| ${model} | ${what} | ${sets.slice(0, 2).map((s) => { const c = cell(s)!; return `${f1(c.exact_match)} / ${f1(c.f1)}`; }).join(" | ")} | ${f1(cell("define")!.rouge_gm ?? 0)} | ${qps.toFixed(1)} |`;
    }),
  ];
  const c = a.controls["retro-fit"], g = a.controls["gpt-fit"];
  return [
    "# retro-ts demo report",
    "",
    `Generated by \`retro demo --out ${a.out}\` on the bundled corpus. Every figure below was computed by this run.`,
    "",
    "## Setup",
    "",
    "```",
    formatStats(a.db.manifest),
    "```",
    `- Database: \`${path.relative(process.cwd(), a.dbDir) || "."}\` (neighbours by ${a.db.manifest.index && isBm25(a.db.manifest.index.description) ? "BM25" : `the ${a.db.manifest.index?.description} index over ${a.db.manifest.embeddings?.embedderId} embeddings`}). Models: GPT d ${gc.d}, ${gc.layers} layers, ${gc.heads} heads, seq ${gc.seq} (${(paramCount(gc) / 1e6).toFixed(2)}M parameters); Retro adds a ${rc.enc_layers}-layer encoder and CCA in layers ${rc.cca_layers.join(" and ")} (${(paramCount(rc) / 1e6).toFixed(2)}M), k ${rc.k} neighbours of ${rc.r} tokens${rc.retrieval_rope ? ", rotary positions in the retrieval path" : ""}.`,
    `- GPT pretrained ${a.P} steps (batch ${batch} × ${gc.seq} tokens); GPT-fitting and Retro-fitting continue it ${a.F} steps each on the same tokens (lr 3e-4 → 3e-5).`,
    `- Instruction tuning: ${a.S} steps of 8 conversations, loss on the last assistant turn; InstructRetro with the CCA gate at 0 (the paper's choice); no system prompt (the paper's takes 65 of 256 positions).`,
    `- Time per stage (s): ${Object.entries(a.times).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ")} (stages reused from an earlier run count ~0).`,
    "",
    "## Step 3 — held-out perplexity (documents never in the database)",
    "",
    "| model | perplexity |",
    "|---|---|",
    ...Object.entries(a.ppl).map(([k, v]) => `| ${k} | ${v.toFixed(2)} |`),
    "",
    `Retro-fitting vs GPT-fitting on the same tokens: ${(100 * (a.ppl["Retro-fitting"] / a.ppl["GPT-fitting"] - 1)).toFixed(1)} %. Positions that read no neighbours (the first 63): Retro-fit loss ${c.noNeighboursRead.loss.toFixed(3)}, GPT-fit ${g.noNeighboursRead.loss.toFixed(3)}. Target token in the neighbours read: Retro-fit ${c.targetInNeighbours.yes.loss.toFixed(3)} vs GPT-fit ${g.targetInNeighbours.yes.loss.toFixed(3)}; not in them: ${c.targetInNeighbours.no.loss.toFixed(3)} vs ${g.targetInNeighbours.no.loss.toFixed(3)}.`,
    "",
    "![curves](figures/curves.png)",
    "",
    "![overlap](figures/overlap.png)",
    "",
    "## Steps 4–5 — instruction tuning, then zero-shot QA on held-out questions",
    "",
    `Bundled WordNet sets (labelled synthetic; \`${rel(path.join(a.out, "data", "README.md"))}\`): ${a.counts.train.qa} instruction questions and ${a.counts.train.chat} chats; ${a.Q} held-out questions per task, none of them in the instruction data. The top-2 BM25 passages contain a gold answer for ${(100 * a.counts.recall.synonym).toFixed(1)} % of the synonym and ${(100 * a.counts.recall.word).toFixed(1)} % of the word questions (the ceiling of answering from the passages). Greedy answers up to a newline; EM/F1 with SQuAD's rules; ROUGE-1/2/L geometric mean for the definitions.`,
    "",
    ...qaTable,
    "",
    "![qa](figures/qa.png)",
    "",
    "## Generation with citations (the Retro-fit, temperature 0.8, top-p 0.9, seed 1)",
    "",
    "```",
    a.sample.prompt + a.sample.text,
    "```",
    ...a.sample.cites.map((x) => `- ${x}`),
    "",
    "Small models and few steps: the figures show the pipeline working end to end and the sign of each comparison at this scale, not the paper's magnitudes (see the README's measurements).",
    "",
  ].join("\n");
}

/** parameters of a model config (counted from its tensor shapes: no weights read) */
function paramCount(c: ModelConfig): number {
  return paramSpecs(c).reduce((a, sp) => a + sp.shape.reduce((x, y) => x * y, 1), 0);
}
