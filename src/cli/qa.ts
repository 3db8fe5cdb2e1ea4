/** `retro eval qa` and `retro eval score` (step 5): retrieval-augmented QA, EM/F1/ROUGE, the comparison table. */
import * as fs from "node:fs";
import * as path from "node:path";
import { Option, type Command } from "commander";
import { Database } from "../db/database.ts";
import { Retriever } from "../db/retriever.ts";
import { resolveCheckpointDir, checkpointDbDir, openCheckpoint, systemPromptFor } from "../model/checkpoint.ts";
import { readQaFile } from "../prompt/qa-formats.ts";
import { evalQa, type QaReport, type QaVariant } from "../qa/evaluate.ts";
import { scoreFiles } from "../qa/score.ts";
import { SYSTEM_PROMPT } from "../prompt/format.ts";
import { RetroError } from "../util/errors.ts";
import { writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";
import { collect, intFlag } from "./args.ts";

const VARIANTS: readonly QaVariant[] = ["rag", "encoder", "none"];

/** `label=dir` or `dir` (label: the folder's name) */
function labelled(s: string): { label: string; dir: string } {
  const eq = s.indexOf("=");
  if (eq > 0 && !fs.existsSync(s)) return { label: s.slice(0, eq), dir: s.slice(eq + 1) };
  return { label: path.basename(path.resolve(s)), dir: s };
}

export function registerQa(evalCmd: Command): void {
  evalCmd
    .command("qa")
    .description(
      "step 5: zero-shot QA — passages (the file's or retrieved) in the prompt, greedy answers, EM/F1 (SQuAD); " +
        "several checkpoints × sets × variants in one table",
    )
    .requiredOption("--ckpt <[label=]dir>", "checkpoint or run folder; repeatable", collect, [])
    .requiredOption(
      "--data <file>",
      "QA set: SQuAD 1.1/2.0 JSON, KILT JSONL, Megatron QA JSON or plain JSONL; repeatable",
      collect,
      [],
    )
    .option("--db <dir>", "database to retrieve from (default: the first checkpoint's)")
    .option(
      "--variants <list>",
      "rag (passages in the prompt, gate 0), encoder (Retro, gate 1, top-k in the encoder too), none (no passages); " +
        "default: all that apply",
    )
    .addOption(
      new Option(
        "--passages <src>",
        "the file's passages or the database's top-k for the question (default: the file's when it has them)",
      ).choices(["file", "retrieve"]),
    )
    .option("--top-k <n>", "passages per question", intFlag("--top-k", { min: 0, max: 100 }), 5)
    .addOption(
      new Option(
        "--retriever <kind>",
        "passages from the database's own index, or BM25 over its chunks (built in memory)",
      )
        .choices(["index", "bm25"])
        .default("index"),
    )
    .option(
      "--system <text>",
      "system prompt (default: the one each checkpoint was instruction-tuned with, else the paper's)",
    )
    .option("--no-system", "no system prompt")
    .option("--max-tokens <n>", "answer tokens at most", intFlag("--max-tokens", { min: 1 }), 32)
    .option("--batch <n>", "questions decoded together", intFlag("--batch", { min: 1 }), 8)
    .option("--limit <n>", "the first N questions of each set", intFlag("--limit", { min: 1 }))
    .addOption(
      new Option("--f1 <variant>", "squad: max over gold answers; megatron: first gold answer, ParlAI normalisation")
        .choices(["squad", "megatron"])
        .default("squad"),
    )
    .option("--rouge", "also ROUGE-1/2/L and their geometric mean (long-form answers)")
    .option("--out <dir>", "write predictions (one JSONL per checkpoint × set × variant), results.json and table.md")
    .option("--json", "print one JSON line per evaluation instead of the table")
    .action(async (o) => {
      // a checkpoint is asked in the prompt it was tuned with unless --system / --no-system says otherwise
      const systemOf = (dir: string): string | null =>
        systemPromptFor(resolveCheckpointDir(dir), o.system, SYSTEM_PROMPT);
      const asked = o.variants
        ? String(o.variants)
            .split(",")
            .map((v) => v.trim())
        : null;
      for (const v of asked ?? [])
        if (!VARIANTS.includes(v as QaVariant))
          throw new RetroError("usage", `--variants: unknown "${v}" (rag, encoder, none)`);
      const sets = (o.data as string[]).map((f) => ({
        file: f,
        name: path.basename(f).replace(/\.(jsonl?|json)$/, ""),
        items: readQaFile(f).items.slice(0, o.limit ?? undefined),
      }));
      const ckpts = (o.ckpt as string[]).map(labelled);
      // each checkpoint's rows and prediction files are named by its label: two alike would overwrite each other
      const seen = new Set<string>();
      for (const c of ckpts) {
        if (seen.has(c.label))
          throw new RetroError(
            "usage",
            `--ckpt: two checkpoints labelled "${c.label}"; name them apart with --ckpt LABEL=DIR`,
          );
        seen.add(c.label);
      }
      const dbDir = checkpointDbDir(ckpts[0].dir, o.db);
      const db = new Database(dbDir);
      let retriever: Retriever | null = null;
      const reports: { ckpt: string; set: string; report: QaReport }[] = [];
      try {
        for (const ck of ckpts) {
          const { model } = openCheckpoint(ck.dir, { db });
          const variants = (asked ?? VARIANTS).filter((v) => v !== "encoder" || model.isRetro) as QaVariant[];
          if (asked?.includes("encoder") && !model.isRetro)
            process.stderr.write(`retro: note: ${ck.label} is a GPT: variant "encoder" skipped\n`);
          for (const set of sets) {
            for (const variant of variants) {
              const needsDb =
                variant !== "none" &&
                (o.passages === "retrieve" || (o.passages === undefined && !set.items.some((q) => q.passages.length)));
              if (needsDb && !retriever)
                retriever = o.retriever === "bm25" ? await Retriever.bm25(db) : await Retriever.open(db);
              const r = await evalQa(model, db.tokenizer, retriever, set.items, {
                variant,
                passages: o.passages,
                topK: o.topK,
                system: systemOf(ck.dir),
                maxTokens: o.maxTokens,
                batch: o.batch,
                f1: o.f1,
                rouge: o.rouge,
                showProgress: !o.json,
              });
              reports.push({ ckpt: ck.label, set: set.name, report: r });
              const { predictions, ...fig } = r;
              if (o.json) console.log(JSON.stringify({ ckpt: ck.label, set: set.name, ...fig }));
              if (o.out) {
                fs.mkdirSync(o.out, { recursive: true });
                writeFileAtomic(
                  path.join(o.out, `${ck.label}.${set.name}.${variant}.jsonl`),
                  predictions.map((p) => JSON.stringify(p)).join("\n") + "\n",
                );
              }
            }
          }
        }
      } finally {
        db.close();
      }
      const table = qaTable(reports, Boolean(o.rouge));
      if (!o.json) console.log(table);
      if (o.out) {
        writeJsonAtomic(
          path.join(o.out, "results.json"),
          reports.map(({ ckpt, set, report: { predictions: _p, ...fig } }) => ({ ckpt, set, ...fig })),
        );
        writeFileAtomic(path.join(o.out, "table.md"), table + "\n");
      }
    });

  evalCmd
    .command("score")
    .description(
      "score predictions against gold answers: one JSON line {exact_match, f1, count} on the official SQuAD scale " +
        "(0–100)",
    )
    .requiredOption("--predictions <file>", `JSONL of {"id", "prediction"} or the official predictions JSON {id: text}`)
    .requiredOption("--gold <file>", "QA file (SQuAD, KILT, Megatron QA JSON, plain JSONL)")
    .addOption(new Option("--f1 <variant>", "squad | megatron").choices(["squad", "megatron"]).default("squad"))
    .option("--rouge", "add ROUGE-1/2/L F-measures and their geometric mean")
    .action((o) => {
      console.log(JSON.stringify(scoreFiles(o.predictions, o.gold, { f1: o.f1, rouge: o.rouge })));
    });
}

/** rows: checkpoint × variant; columns: each set's EM / F1; and questions/s */
export function qaTable(reports: { ckpt: string; set: string; report: QaReport }[], rouge: boolean): string {
  const sets = [...new Set(reports.map((r) => r.set))];
  const rows = [...new Set(reports.map((r) => `${r.ckpt}\u0000${r.report.variant}`))];
  const head = [
    "model",
    "variant",
    ...sets.map((s) => `${s} EM / F1${rouge ? " / ROUGE gm" : ""}`),
    "passages cut",
    "questions/s",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const row of rows) {
    const [ckpt, variant] = row.split("\u0000");
    const mine = reports.filter((r) => r.ckpt === ckpt && r.report.variant === variant);
    const cells = sets.map((s) => {
      const r = mine.find((x) => x.set === s)?.report;
      return r
        ? `${r.exact_match.toFixed(1)} / ${r.f1.toFixed(1)}${rouge ? ` / ${(r.rouge_gm ?? 0).toFixed(1)}` : ""}`
        : "–";
    });
    const cut = mine.reduce((a, r) => a + r.report.truncated, 0),
      n = mine.reduce((a, r) => a + r.report.count, 0);
    const qps = n / mine.reduce((a, r) => a + r.report.seconds, 0);
    lines.push(`| ${ckpt} | ${variant} | ${cells.join(" | ")} | ${cut} of ${n} | ${qps.toFixed(1)} |`);
  }
  return lines.join("\n");
}
