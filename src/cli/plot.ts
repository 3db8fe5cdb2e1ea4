/** `retro plot`: loss / perplexity curves of runs. */
import * as path from "node:path";
import type { Command } from "commander";
import { plotRuns } from "../train/plot.ts";

export function registerPlot(program: Command): void {
  program
    .command("plot")
    .description("render loss / perplexity curves of one or more runs (metrics.jsonl) as SVG, and PNG")
    .argument("<runs...>", "run folders; NAME=DIR sets the legend name")
    .requiredOption("--out <file>", "output .svg (a .png is written beside it)")
    .option("--title <text>", "chart title", "retro-ts")
    .option("--no-png", "SVG only")
    .action(async (runs: string[], o) => {
      const files = await plotRuns(
        runs.map((r) =>
          r.includes("=")
            ? { name: r.slice(0, r.indexOf("=")), dir: r.slice(r.indexOf("=") + 1) }
            : { name: path.basename(path.resolve(r)), dir: r },
        ),
        o.out,
        { title: o.title, png: o.png },
      );
      console.log(files.join("\n"));
    });
}
