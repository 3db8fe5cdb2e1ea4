/**
 * The GPT-fitting vs Retro-fitting protocol shared by the experiments on real text (parallel-bibles.ts,
 * bundled-corpus.ts): per seed a GPT pretrained on the database's training split, then continued on identical
 * tokens (the same seed, hence the same batches in the same order) by GPT-fitting and by each Retro-fitting
 * recipe; held-out loss with the controls of `retro eval ppl --controls`. Results are appended to a JSON file
 * as each run ends, so a killed experiment resumes where it stopped; `report` prints the table from that file.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Database } from "../../src/db/database.ts";
import { train } from "../../src/train/trainer.ts";
import { loadModel } from "../../src/model/checkpoint.ts";
import { evalControls, type ControlReport } from "../../src/train/controls.ts";

export interface FittingSetup {
  /** folder of the runs */
  work: string;
  /** results JSON */
  out: string;
  /** the database the GPT is pretrained on (and the default of every variant) */
  db: string;
  /** databases a GPT-fitting run is also evaluated against (bucketed, in-context baseline), by label */
  gptControlDbs?: Record<string, string>;
  /** GPT size (model config keys) */
  size: Record<string, unknown>;
  /** train() options common to every run */
  common: Record<string, unknown>;
  /** variant name → train() options over `common` ("gpt-fitting" must be one) */
  variants: Record<string, Record<string, unknown>>;
  preSteps: number;
  fitSteps: number;
  seeds: number;
  /** variant names to run (exact, or a substring matching several) */
  only?: string[] | null;
  /** written into the results file beside the rows */
  describe?: Record<string, unknown>;
}

/** a row per (variant, seed, fitSteps); the pretrained GPT each fit starts from is the row PRETRAINED with fitSteps 0 */
export const PRETRAINED = "gpt pretrained";
export type Row = {
  name: string;
  seed: number;
  fitSteps: number;
  seconds: number;
  controls?: Record<string, ControlReport>;
  bm25Controls?: ControlReport;
} & ControlReport;

export const stats = (xs: number[]) => {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd, n: xs.length };
};

/** mean ± sd over the seeds, or the value alone for one seed */
export const meanSd = (xs: number[], d = 2, unit = "") => {
  const st = stats(xs);
  return st.n > 1 ? `${st.mean.toFixed(d)} ± ${st.sd.toFixed(d)}${unit}` : `${st.mean.toFixed(d)}${unit}`;
};

/** f(row, the GPT-fitting row of the same seed), for each row that has one */
export const pairedWithGpt = <T>(rows: Row[], gpt: Row[], f: (r: Row, g: Row) => T): T[] =>
  rows.flatMap((r) => {
    const g = gpt.find((x) => x.seed === r.seed);
    return g ? [f(r, g)] : [];
  });

/** Retro-fitting's gain in the perplexity of the chunks of overlap bucket b over GPT-fitting's, both bucketed by the same neighbours (a share; negative: worse) */
export const bucketGain = (r: ControlReport, g: ControlReport, b: number) =>
  1 - Math.exp(r.overlap[b].loss - g.overlap[b].loss);

const runDir = (s: FittingSetup, name: string, seed: number) =>
  path.join(s.work, `${name.replace(/[^a-z0-9]+/gi, "-")}-seed${seed}-${s.fitSteps}`);

export function loadRows(out: string): Row[] {
  return fs.existsSync(out) ? (JSON.parse(fs.readFileSync(out, "utf8")).results ?? []) : [];
}

function summary(s: FittingSetup, results: Row[]) {
  const out: Record<string, unknown> = {};
  const gpt = results.filter((r) => r.name === "gpt-fitting" && r.fitSteps === s.fitSteps);
  for (const name of Object.keys(s.variants)) {
    const rows = results.filter((r) => r.name === name && r.fitSteps === s.fitSteps);
    if (!rows.length) continue;
    const o: Record<string, unknown> = { pplOwn: stats(rows.map((r) => r.ppl.own)), seeds: rows.map((r) => r.seed) };
    if (rows[0].model === "retro") {
      o.pplRandom = stats(rows.map((r) => r.ppl.random!));
      o.pplAnother = stats(rows.map((r) => r.ppl.another!));
      o.pplNone = stats(rows.map((r) => r.ppl.none!));
      // the gain over GPT-fitting of the same seed
      o.pplGainVsGptFitting = stats(pairedWithGpt(rows, gpt, (r, g) => 1 - r.ppl.own / g.ppl.own));
      o.pplGainRandomVsGptFitting = stats(pairedWithGpt(rows, gpt, (r, g) => 1 - r.ppl.random! / g.ppl.own));
    }
    out[name] = o;
  }
  return out;
}

function write(s: FittingSetup, results: Row[]) {
  fs.mkdirSync(path.dirname(s.out), { recursive: true });
  const tmp = `${s.out}.tmp`;
  const setup = {
    ...s.describe,
    size: s.size,
    common: s.common,
    variants: s.variants,
    preSteps: s.preSteps,
    fitSteps: s.fitSteps,
  };
  fs.writeFileSync(tmp, JSON.stringify({ setup, summary: summary(s, results), results }, null, 1));
  fs.renameSync(tmp, s.out);
}

/** Train and evaluate every missing (variant, seed) of the setup; rows already in the results file are kept. */
export async function runFitting(s: FittingSetup): Promise<Row[]> {
  const results = loadRows(s.out);
  for (let seed = 1; seed <= s.seeds; seed++) {
    const gpt = path.join(s.work, `gpt-seed${seed}-${s.preSteps}`);
    if (!fs.existsSync(path.join(gpt, "latest.json"))) {
      fs.rmSync(gpt, { recursive: true, force: true });
      const t0 = Date.now();
      await train(gpt, { db: s.db, ...s.common, model: { ...s.size, model: "gpt" }, steps: s.preSteps, seed });
      console.log(`seed ${seed}: GPT pretrained ${s.preSteps} steps in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
    if (!results.some((r) => r.name === PRETRAINED && r.seed === seed)) {
      // where both fits start (the paper's Fig. 2 shows the pretrained GPT beside GPT-fitting and Retro-fitting)
      const t0 = Date.now();
      const db = new Database(s.db);
      const c = evalControls(loadModel(gpt).model, db, { batch: 16, seed });
      db.close();
      results.push({ name: PRETRAINED, seed, fitSteps: 0, seconds: (Date.now() - t0) / 1000, ...c });
      write(s, results);
    }
    for (const [name, v] of Object.entries(s.variants)) {
      if (s.only && !s.only.some((o) => (o in s.variants ? o === name : name.includes(o)))) continue;
      if (results.some((r) => r.name === name && r.seed === seed && r.fitSteps === s.fitSteps)) continue;
      const out = runDir(s, name, seed);
      fs.rmSync(out, { recursive: true, force: true });
      const t0 = Date.now();
      // the same seed for every continuation of one GPT: identical tokens in identical order
      await train(out, { db: s.db, ...s.common, init: gpt, steps: s.fitSteps, seed: 100 + seed, ...v });
      const { model } = loadModel(out);
      const db = new Database((v.db as string | undefined) ?? s.db);
      const c = evalControls(model, db, { batch: 16, seed });
      db.close();
      const rec: Row = { name, seed, fitSteps: s.fitSteps, seconds: (Date.now() - t0) / 1000, ...c };
      if (!model.isRetro && s.gptControlDbs) {
        // the same GPT bucketed (and given in context) other databases' neighbours
        rec.controls = {};
        for (const [label, dir] of Object.entries(s.gptControlDbs)) {
          const odb = new Database(dir);
          rec.controls[label] = evalControls(model, odb, { batch: 16, seed });
          odb.close();
        }
      }
      results.push(rec);
      console.log(
        `seed ${seed} ${name}: ppl own ${c.ppl.own.toFixed(2)}${c.ppl.random ? `, random ${c.ppl.random.toFixed(2)}, another ${c.ppl.another!.toFixed(2)}, none ${c.ppl.none!.toFixed(2)}` : ""} (${rec.seconds.toFixed(0)} s)`,
      );
      write(s, results);
    }
  }
  write(s, results);
  return results;
}

const fmt = (xs: number[], d = 2) => meanSd(xs, d);

/** The markdown tables of the measured rows (mean ± sd over the seeds present), as the README quotes them. */
export function report(s: Pick<FittingSetup, "variants" | "fitSteps">, results: Row[]): string {
  const lines: string[] = [];
  lines.push(
    "| run | seeds | held-out ppl | random neighbours | another sample's | none (gate 0) | vs GPT-fitting | loss, " +
      "chunks overlapping ≤ 12.5 % / > 50 % |",
  );
  lines.push("|---|---|---|---|---|---|---|---|");
  const gpt = results.filter((r) => r.name === "gpt-fitting" && r.fitSteps === s.fitSteps);
  const pre = results.filter((r) => r.name === PRETRAINED);
  if (pre.length)
    lines.push(
      `| GPT pretrained (where both fits start) | ${pre.map((r) => r.seed).join(",")} | ${fmt(pre.map((r) => r.ppl.own))} | – | – | – | – | ${fmt(
        pre.map((r) => r.overlap[0].loss),
        3,
      )} / – |`,
    );
  const hi = (r: Row) => {
    const all = r.overlap[3],
      half = r.overlap[2];
    return all.tokens > half.tokens
      ? (all.loss * all.tokens - half.loss * half.tokens) / (all.tokens - half.tokens)
      : NaN;
  };
  for (const name of Object.keys(s.variants)) {
    const rows = results.filter((r) => r.name === name && r.fitSteps === s.fitSteps);
    if (!rows.length) continue;
    const retro = rows[0].model === "retro";
    lines.push(
      `| ${name} | ${rows.map((r) => r.seed).join(",")} | ${fmt(rows.map((r) => r.ppl.own))} | ${retro ? fmt(rows.map((r) => r.ppl.random!)) : "–"} | ${retro ? fmt(rows.map((r) => r.ppl.another!)) : "–"} | ${retro ? fmt(rows.map((r) => r.ppl.none!)) : "–"} | ${
        retro
          ? `${fmt(
              pairedWithGpt(rows, gpt, (r, g) => 100 * (1 - r.ppl.own / g.ppl.own)),
              1,
            )} %`
          : "–"
      } | ${fmt(
        rows.map((r) => r.overlap[0].loss),
        3,
      )} / ${fmt(rows.map(hi), 3)} |`,
    );
  }
  // the overlap buckets (cumulative, RETRO §2.6): loss and share of the held-out chunks, per run
  lines.push(
    "",
    "| run | " +
      ["≤ 12.5 %", "≤ 25 %", "≤ 50 %", "≤ 100 %"].map((b) => `loss, overlap ${b} (chunks)`).join(" | ") +
      " |",
    "|---|---|---|---|---|",
  );
  for (const name of Object.keys(s.variants)) {
    const rows = results.filter((r) => r.name === name && r.fitSteps === s.fitSteps);
    if (!rows.length) continue;
    const cells = [0, 1, 2, 3].map(
      (b) =>
        `${fmt(
          rows.map((r) => r.overlap[b].loss),
          3,
        )} (${((100 * rows[0].overlap[b].chunks) / rows[0].overlap[3].chunks).toFixed(1)} %)`,
    );
    lines.push(`| ${name} | ${cells.join(" | ")} |`);
  }
  const ic = gpt.filter((r) => r.inContext);
  if (ic.length)
    lines.push(
      "",
      `in-context baseline (GPT-fitting, its database's neighbours before the context): ${fmt(
        ic.map((r) => r.inContext!.with),
        4,
      )} with vs ${fmt(
        ic.map((r) => r.inContext!.without),
        4,
      )} without`,
    );
  for (const label of new Set(gpt.flatMap((r) => Object.keys(r.controls ?? (r.bm25Controls ? { bm25: 0 } : {}))))) {
    const xs = gpt
      .map((r) => r.controls?.[label] ?? (label === "bm25" ? r.bm25Controls : undefined))
      .filter((c): c is ControlReport => !!c?.inContext);
    if (xs.length)
      lines.push(
        `in-context baseline (${label} neighbours): ${fmt(
          xs.map((c) => c.inContext!.with),
          4,
        )} with vs ${fmt(
          xs.map((c) => c.inContext!.without),
          4,
        )} without`,
      );
  }
  return lines.join("\n");
}
