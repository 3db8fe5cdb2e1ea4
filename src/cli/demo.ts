/** `retro demo`: all five steps on the bundled corpus, ending in DIR/report.md (src/demo/pipeline.ts). */
import * as fs from "node:fs";
import type { Command } from "commander";
import { DEMO_SFT_STEPS, runDemo } from "../demo/pipeline.ts";
import { intFlag } from "./args.ts";

export function registerDemo(program: Command): void {
  program.command("demo")
    .description("the main job end to end on the bundled corpus: database → GPT → GPT-fitting vs Retro-fitting → perplexity with controls → instruction tuning → QA → report.md (~15 min on 2 cores; re-runs reuse finished stages)")
    .option("--out <dir>", "folder for everything (database, runs, results, figures, report.md)", "runs/demo")
    .option("--db <dir>", "use this database instead of building DIR/db")
    .option("--fresh", "recompute every stage (the database too, unless --db)")
    .option("--pretrain-steps <n>", "GPT pretraining steps", intFlag("--pretrain-steps", { min: 1 }), 400)
    .option("--fit-steps <n>", "GPT-fitting and Retro-fitting steps", intFlag("--fit-steps", { min: 1 }), 150)
    .option("--sft-steps <n>", "instruction-tuning steps", intFlag("--sft-steps", { min: 1 }), DEMO_SFT_STEPS)
    .option("--qa-questions <n>", "held-out questions per QA set", intFlag("--qa-questions", { min: 1 }), 100)
    .action(async (o) => {
      if (o.fresh && !o.db) fs.rmSync(`${o.out}/db`, { recursive: true, force: true });
      const s = await runDemo({ out: o.out, db: o.db, fresh: o.fresh, pretrainSteps: o.pretrainSteps, fitSteps: o.fitSteps, sftSteps: o.sftSteps, qaQuestions: o.qaQuestions });
      console.log("\nheld-out perplexity");
      for (const [k, v] of Object.entries(s.ppl)) console.log(`  ${k.padEnd(44)} ${v.toFixed(2)}`);
      console.log("\nheld-out QA after instruction tuning (EM / F1; define: ROUGE geometric mean)");
      const rows = [...new Set(s.qa.map((r) => `${r.model} ${r.variant}`))];
      for (const row of rows) {
        const mine = s.qa.filter((r) => `${r.model} ${r.variant}` === row);
        console.log(`  ${row.padEnd(22)} ${mine.map((r) => (r.set === "define" ? `${r.set} ${(r.rouge_gm ?? 0).toFixed(1)}` : `${r.set} ${r.exact_match.toFixed(1)} / ${r.f1.toFixed(1)}`)).join("   ")}`);
      }
      console.log(`\nreport: ${s.report} (figures beside it; runs, data and results in ${o.out})`);
    });
}
