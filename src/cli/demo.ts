/** `retro demo`: all five steps on the knowledge corpus, ending in DIR/report.md (src/demo/pipeline.ts). */
import type { Command } from "commander";
import { DEMO, DEMO_PEOPLE, runDemo } from "../demo/pipeline.ts";
import { SEED_RANGE } from "../util/numbers.ts";
import { intFlag } from "./args.ts";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "the main job end to end on a synthetic knowledge corpus: database → GPT → GPT-fitting vs Retro-fitting → " +
        "perplexity on facts only in the database → instruction tuning → QA with retrieved passages → knowledge " +
        "update with db add → report.md (~14 min on 2 cores; re-runs reuse finished stages)",
    )
    .option("--out <dir>", "folder for everything (data, database, runs, results, figures, report.md)", "runs/demo")
    .option("--db <dir>", "use this database (one the demo built, same seed) instead of building DIR/db")
    .option("--fresh", "recompute every stage (the database too, unless --db)")
    .option(
      "--seed <n>",
      "seed of the corpus, the database and every run",
      intFlag("--seed", SEED_RANGE),
      DEMO_PEOPLE.seed,
    )
    .option(
      "--pretrain-steps <n>",
      "GPT pretraining steps",
      intFlag("--pretrain-steps", { min: 1 }),
      DEMO.pretrainSteps,
    )
    .option("--fit-steps <n>", "GPT-fitting and Retro-fitting steps", intFlag("--fit-steps", { min: 1 }), DEMO.fitSteps)
    .option("--sft-steps <n>", "instruction-tuning steps", intFlag("--sft-steps", { min: 1 }), DEMO.sftSteps)
    .option("--d <n>", "model width (GPT and Retro decoder)", intFlag("--d", { min: 8 }))
    .option("--layers <n>", "decoder layers", intFlag("--layers", { min: 1 }))
    .option(
      "--people-a <n>",
      "people in group A (the pretraining text; more people, fewer epochs over each)",
      intFlag("--people-a", { min: 10 }),
      DEMO_PEOPLE.a,
    )
    .option(
      "--people-d <n>",
      "people in group D (the fitting text: biographies the GPT never saw, whose other biography is in the database)",
      intFlag("--people-d", { min: 0 }),
      DEMO_PEOPLE.d,
    )
    .option(
      "--qa-questions <n>",
      "questions per QA set at most",
      intFlag("--qa-questions", { min: 1 }),
      DEMO.qaQuestions,
    )
    .action(async (o) => {
      const s = await runDemo({
        out: o.out,
        db: o.db,
        fresh: o.fresh,
        seed: o.seed,
        pretrainSteps: o.pretrainSteps,
        fitSteps: o.fitSteps,
        sftSteps: o.sftSteps,
        qaQuestions: o.qaQuestions,
        model: { ...(o.d ? { d: o.d } : {}), ...(o.layers ? { layers: o.layers } : {}) },
        people: { a: o.peopleA, d: o.peopleD },
      });
      console.log("\nheld-out perplexity on B's biographies (loss on fact tokens)");
      for (const [k, v] of Object.entries(s.ppl))
        console.log(
          `  ${k.padEnd(44)} ${v.toFixed(2)}${s.factLoss[k] !== undefined ? `  (${s.factLoss[k].toFixed(3)})` : ""}`,
        );
      console.log("\nQA (EM / F1)");
      for (const r of s.qa)
        console.log(
          `  ${r.set.padEnd(16)} ${r.model.padEnd(14)} ${r.variant.padEnd(5)} ${r.exact_match.toFixed(1)} / ` +
            `${r.f1.toFixed(1)}`,
        );
      for (const [when, rows] of [
        ["before", s.update.before],
        ["after", s.update.after],
      ] as const) {
        for (const r of rows)
          console.log(
            `  C ${when} db add ${r.model.padEnd(14)} ${r.variant.padEnd(5)} ${r.exact_match.toFixed(1)} / ` +
              `${r.f1.toFixed(1)}`,
          );
      }
      const served = s.update.served;
      console.log(`\nserved by retro serve: ${served.filter((x) => x.right).length} of ${served.length} right`);
      for (const x of served) console.log(`  ${x.right ? "✓" : "✗"} ${x.question} → ${x.answer} (${x.expected})`);
      console.log(`\nreport: ${s.report} (figures beside it; runs, data and results in ${o.out})`);
    });
}
