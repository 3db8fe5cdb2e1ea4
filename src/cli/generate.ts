/** `retro generate`: text from a GPT or Retro checkpoint, streamed; Retro retrieves from its database as it goes. */
import { Option, type Command } from "commander";
import { Retriever } from "../db/retriever.ts";
import { defaultPassages, openCheckpoint, systemPromptFor } from "../model/checkpoint.ts";
import { SYSTEM_PROMPT } from "../prompt/format.ts";
import { promptWithPassages } from "../prompt/passages.ts";
import { SAMPLING_SETTINGS } from "../generate/sampling.ts";
import { defaultsOf } from "../util/settings.ts";
import { addSettingFlags, settingValues } from "./flags.ts";
import { Generator, type GenerateEvent, type GenerateOptions, type RetrieveMode } from "../generate/generate.ts";
import { RetroError } from "../util/errors.ts";
import { readTextFile } from "../util/fsx.ts";
import { jsonLines } from "../util/jsonl.ts";
import { collect, intFlag } from "./args.ts";

function readPrompts(file: string): string[] {
  const out = jsonLines(readTextFile(file, "prompts file"), file).map(({ line, value }) => {
    const p = value && typeof value === "object" ? (value as Record<string, unknown>).prompt : undefined;
    if (typeof p !== "string") throw new RetroError("badInput", `${file}:${line}: expected {"prompt": "..."}`);
    return p;
  });
  if (!out.length) throw new RetroError("badInput", `${file}: no prompts`);
  return out;
}

function formatRetrieval(ev: Extract<GenerateEvent, { type: "retrieval" }>, chars = 160): string {
  const clip = (s: string) => (s.length > chars ? s.slice(0, chars) + "…" : s).replace(/\s+/g, " ");
  const head = ev.chunk < 0 ? `retrieved by the prompt` : `retrieved for chunk ${ev.chunk}: "${clip(ev.query)}"`;
  return [
    `[${head}]`,
    ...ev.neighbours.map(
      (n, i) =>
        `  [${i}] ${n.dataset} document ${n.document}, chunk ${n.chunk}, score ${n.score.toFixed(3)}: ${clip(n.text)}`,
    ),
  ].join("\n");
}

export function registerGenerate(program: Command): void {
  const cmd = program
    .command("generate")
    .description(
      "generate text from a checkpoint (greedy by default); Retro retrieves from the database every completed chunk",
    )
    .requiredOption("--ckpt <dir>", "run folder (its latest checkpoint) or checkpoint folder")
    .option("--db <dir>", "database folder (default: the run's database)")
    .option("--prompt <text>", "the prompt; its continuation streams to stdout")
    .option("--prompts <file>", 'JSONL of {"prompt": ...}: one JSON result per line on stdout')
    .option("--stop <text>", "stop before this string (repeatable)", collect, [])
    .option("--ignore-eod", "keep going past the end-of-document token")
    .addOption(
      new Option(
        "--retrieve <mode>",
        "Retro: chunk (every completed chunk) | prompt (once, by the prompt) | none (gate 0)",
      ).choices(["chunk", "prompt", "none"]),
    )
    .option(
      "--show-neighbours",
      "print each retrieval's chunks (dataset, document, text) to stderr (--prompt) or into the JSON (--prompts)",
    )
    .option(
      "--chat",
      "the prompt is a user's message: ask it in the template the run was instruction-tuned with (System/User/" +
        "Assistant), with its system prompt and, for a tuned model that reads no neighbours, its top passages",
    )
    .option("--system <text>", "--chat: system prompt (default: the one the run was tuned with, else the paper's)")
    .option("--no-system", "--chat: no system prompt")
    .option(
      "--passages <k>",
      "--chat: top-k passages retrieved by the message into the prompt (default: 2 for an instruction-tuned GPT or " +
        "a Retro with its CCA gate at 0, else 0)",
      intFlag("--passages", { min: 0, max: 16 }),
    )
    .option("--batch <n>", "prompts decoded together (--prompts)", intFlag("--batch", { min: 1 }), 8)
    .option("--threads <n>", "kernel threads", intFlag("--threads", { min: 1, max: 256 }));
  addSettingFlags(cmd, SAMPLING_SETTINGS, defaultsOf(SAMPLING_SETTINGS));
  cmd.action(async (o) => {
    if ((o.prompt === undefined) === (o.prompts === undefined))
      throw new RetroError("usage", "give one of --prompt TEXT or --prompts FILE.jsonl");
    if (o.prompt === "") throw new RetroError("usage", "--prompt: empty (nothing to continue)");
    const { model, db, dir, run } = openCheckpoint(o.ckpt, { db: o.db });
    if (o.threads) model.engine.setThreads(o.threads);
    // a Retro with its CCA gate at 0 (InstructRetro as tuned) reads no neighbours: none are retrieved by chunk
    // unless asked for (as retro serve does)
    const mode: RetrieveMode | undefined = o.retrieve ?? (model.isRetro && model.gate === 0 ? "none" : undefined);
    const passages: number = o.chat ? (o.passages ?? defaultPassages(model, run)) : 0;
    const needRetriever = (model.isRetro && mode !== "none") || passages > 0;
    const retriever = needRetriever ? await Retriever.open(db) : null;
    const gen = new Generator(model, db.tokenizer, retriever);
    const opts: GenerateOptions = {
      ...settingValues(o, SAMPLING_SETTINGS),
      stop: o.stop,
      retrieve: mode,
      ignoreEod: Boolean(o.ignoreEod),
    };
    // --chat: each prompt is a user's message, asked in the run's tuning template (with passages when due)
    const system = systemPromptFor(dir, o.system, SYSTEM_PROMPT);
    const asked = async (p: string) =>
      o.chat
        ? (
            await promptWithPassages(retriever, db.tokenizer, {
              messages: [{ role: "user", content: p }],
              system,
              topK: passages,
              room: model.config.seq - opts.maxTokens!,
            })
          ).prompt
        : p;
    if (o.prompt !== undefined) {
      const prompt = await asked(o.prompt);
      process.stdout.write(prompt);
      for await (const ev of gen.stream([prompt], opts)) {
        if (ev.type === "text") process.stdout.write(ev.text);
        else if (ev.type === "retrieval" && o.showNeighbours) process.stderr.write(`\n${formatRetrieval(ev)}\n`);
        else if (ev.type === "done") {
          const r = ev.result;
          const cut = r.truncated
            ? `; the prompt was longer than the model's ${model.config.seq} positions: its first ${r.truncated} ` +
              "tokens were dropped"
            : "";
          process.stderr.write(
            `\n[${r.tokens.length} tokens, finish: ${r.finish}${model.isRetro ? `, ${r.retrievals} retrievals` : ""}` +
              `${cut}]\n`,
          );
          // an instruction-tuned model ends a plain prompt at once: it only answers in its tuning template
          if (!o.chat && run.tuning && r.tokens.length <= 1 && r.finish === "eod")
            process.stderr.write(
              "hint: this checkpoint was instruction-tuned; ask it with --chat (its System/User/Assistant template)\n",
            );
        }
      }
      process.stdout.write("\n");
      return;
    }
    const raw = readPrompts(o.prompts);
    const prompts = await Promise.all(raw.map(asked));
    for (let s = 0; s < prompts.length; s += o.batch) {
      const part = prompts.slice(s, s + o.batch);
      const cites: Extract<GenerateEvent, { type: "retrieval" }>[][] = part.map(() => []);
      const results: unknown[] = new Array(part.length);
      for await (const ev of gen.stream(part, opts)) {
        if (ev.type === "retrieval") cites[ev.seq].push(ev);
        if (ev.type === "done") {
          const r = ev.result;
          results[ev.seq] = {
            prompt: raw[s + ev.seq],
            ...(o.chat ? { asked: part[ev.seq] } : {}),
            text: r.text,
            finish: r.finish,
            tokens: r.tokens.length,
            promptTokens: r.promptTokens,
            truncated: r.truncated,
            retrievals: r.retrievals,
            ...(o.showNeighbours
              ? { neighbours: cites[ev.seq].map((c) => ({ chunk: c.chunk, query: c.query, neighbours: c.neighbours })) }
              : {}),
          };
        }
      }
      for (const r of results) process.stdout.write(JSON.stringify(r) + "\n");
    }
  });
}
