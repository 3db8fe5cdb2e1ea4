/**
 * `retro plot`: training loss and held-out perplexity of one or several runs (their metrics.jsonl) in one
 * picture, drawn with Vega-Lite (rendered headless to SVG by Vega) and rasterised to PNG by resvg.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { RetroError } from "../util/errors.ts";
import { resolveStored, writeFileAtomic } from "../util/fsx.ts";

export interface MetricLine {
  kind: "train" | "eval";
  step: number;
  loss: number;
  ppl?: number;
  lr?: number;
  grad_norm?: number;
  tokens_per_s?: number;
  tokens?: number;
}

export function readMetrics(dir: string): MetricLine[] {
  const file = fs.existsSync(dir) && fs.statSync(dir).isDirectory() ? path.join(dir, "metrics.jsonl") : dir;
  if (!fs.existsSync(file)) throw new RetroError("notFound", `no metrics: ${file}`);
  const out: MetricLine[] = [];
  fs.readFileSync(file, "utf8")
    .split("\n")
    .forEach((l, i) => {
      if (!l.trim()) return;
      try {
        out.push(JSON.parse(l) as MetricLine);
      } catch {
        throw new RetroError("corrupt", `${file}:${i + 1}: not a JSON line`);
      }
    });
  return out;
}

/**
 * The global step a run starts at: 0 from scratch; for a run started from a checkpoint (`init` in its
 * config.json: Retro-fitting, GPT-fitting, sft), that checkpoint's step plus its own run's start, so that a
 * continued run's curve continues its parent's. A checkpoint outside a run folder counts from its step alone.
 */
export function startStep(runDir: string, seen = new Set<string>()): number {
  const cfgFile = path.join(runDir, "config.json");
  if (!fs.existsSync(cfgFile) || seen.has(path.resolve(runDir))) return 0;
  seen.add(path.resolve(runDir));
  let recorded: unknown;
  try {
    recorded = (JSON.parse(fs.readFileSync(cfgFile, "utf8")) as { init?: unknown }).init;
  } catch {
    return 0;
  }
  if (typeof recorded !== "string") return 0;
  const init = resolveStored(runDir, recorded); // recorded relative to the run (absolute before 2026-12-06)
  if (!fs.existsSync(init)) return 0;
  // init: a run folder (its latest checkpoint) or a checkpoint folder runs/X/checkpoints/step-N
  let ckpt = init,
    parent = init;
  const latest = path.join(init, "latest.json");
  if (fs.existsSync(latest))
    ckpt = path.join(init, (JSON.parse(fs.readFileSync(latest, "utf8")) as { dir: string }).dir);
  else parent = path.dirname(path.dirname(init));
  const m = /step-(\d+)$/.exec(ckpt);
  return (m ? Number(m[1]) : 0) + startStep(parent, seen);
}

/** Smoothed training loss (moving average over `w` steps) keeps several runs readable in one chart. */
function smooth(xs: MetricLine[], w: number): { step: number; loss: number }[] {
  const out: { step: number; loss: number }[] = [];
  let sum = 0;
  for (let i = 0; i < xs.length; i++) {
    sum += xs[i].loss;
    if (i >= w) sum -= xs[i - w].loss;
    out.push({ step: xs[i].step, loss: sum / Math.min(i + 1, w) });
  }
  return out;
}

export async function plotRuns(
  runs: { name: string; dir: string }[],
  outSvg: string,
  o: { title?: string; png?: boolean; smooth?: number } = {},
): Promise<string[]> {
  const train: Record<string, unknown>[] = [],
    evals: Record<string, unknown>[] = [];
  for (const r of runs) {
    const m = readMetrics(r.dir);
    const at = fs.statSync(r.dir).isDirectory() ? startStep(r.dir) : 0;
    for (const p of smooth(
      m.filter((x) => x.kind === "train"),
      o.smooth ?? 20,
    ))
      train.push({ run: r.name, ...p, step: p.step + at });
    for (const e of m.filter((x) => x.kind === "eval")) evals.push({ run: r.name, step: e.step + at, ppl: e.ppl });
  }
  const color = { field: "run", type: "nominal", title: "run" } as const;
  const spec: TopLevelSpec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: o.title ?? "retro-ts",
    config: { font: "DejaVu Sans" },
    hconcat: [
      {
        title: "training loss (nats/token, moving average)",
        width: 380,
        height: 260,
        data: { values: train },
        mark: { type: "line", strokeWidth: 1.5 },
        encoding: {
          x: { field: "step", type: "quantitative", title: "global step (a continued run starts at its checkpoint's)" },
          y: { field: "loss", type: "quantitative", scale: { zero: false } },
          color,
        },
      },
      {
        title: "held-out perplexity",
        width: 380,
        height: 260,
        data: { values: evals },
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "step", type: "quantitative", title: "global step" },
          y: { field: "ppl", type: "quantitative", scale: { zero: false } },
          color,
        },
      },
    ],
  };
  return render(spec, outSvg, o.png);
}

/**
 * Grouped bars: one group per `group`, one bar per `series` (e.g. the loss per overlap bucket for GPT-fitting
 * and Retro-fitting, or the QA scores per set for each model); SVG and PNG like the curves.
 */
export async function plotBars(
  rows: { group: string; series: string; value: number }[],
  outSvg: string,
  o: { title: string; yTitle: string; png?: boolean; zero?: boolean },
): Promise<string[]> {
  const groups = [...new Set(rows.map((r) => r.group))],
    series = [...new Set(rows.map((r) => r.series))];
  const spec: TopLevelSpec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: o.title,
    config: { font: "DejaVu Sans" },
    width: { step: 16 },
    height: 240,
    data: { values: rows },
    mark: { type: "bar" },
    encoding: {
      x: { field: "series", type: "nominal", title: null, sort: series, axis: { labels: false, ticks: false } },
      column: {
        field: "group",
        type: "nominal",
        title: null,
        sort: groups,
        header: { labelAngle: 0, labelAlign: "center" },
      },
      y: { field: "value", type: "quantitative", title: o.yTitle, scale: { zero: o.zero ?? true } },
      color: { field: "series", type: "nominal", title: null, sort: series },
    },
  } as TopLevelSpec;
  return render(spec, outSvg, o.png);
}

async function render(spec: TopLevelSpec, outSvg: string, png: boolean | undefined): Promise<string[]> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  writeFileAtomic(outSvg, svg);
  const files = [outSvg];
  if (png !== false) {
    // resvg-js ships a prebuilt binary per platform; without one the SVG is still written
    try {
      const { Resvg } = await import("@resvg/resvg-js");
      const bytes = new Resvg(svg, {
        background: "white",
        fitTo: { mode: "zoom", value: 1.5 },
        font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
      })
        .render()
        .asPng();
      const outPng = outSvg.replace(/\.svg$/i, "") + ".png";
      writeFileAtomic(outPng, bytes);
      files.push(outPng);
    } catch (e) {
      process.stderr.write(`plot: PNG not written (${(e as Error).message}); the SVG is\n`);
    }
  }
  return files;
}
