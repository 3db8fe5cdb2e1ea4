/** `retro serve`: the OpenAI-compatible HTTP API (src/serve/server.ts). */
import * as path from "node:path";
import { Option, type Command } from "commander";
import { Database } from "../db/database.ts";
import { Retriever } from "../db/retriever.ts";
import { defaultPassages, openCheckpoint, systemPromptFor } from "../model/checkpoint.ts";
import { RetroServer } from "../serve/server.ts";
import { SYSTEM_PROMPT } from "../prompt/format.ts";
import { log } from "../util/progress.ts";
import { intFlag } from "./args.ts";

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description(
      "serve a checkpoint over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, " +
        "/v1/retrieve, /health); Retro answers carry their citations",
    )
    .requiredOption("--ckpt <dir>", "run folder (its latest checkpoint) or checkpoint folder")
    .option("--db <dir>", "database (default: the run's)")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <n>", "port (0: any free port)", intFlag("--port", { min: 0, max: 65535 }), 8080)
    .option("--name <id>", "model id reported by /v1/models (default: the run folder's name)")
    .option(
      "--max-queue <n>",
      "requests waiting at most; more are refused with 503",
      intFlag("--max-queue", { min: 0, max: 100000 }),
      16,
    )
    .option(
      "--system <text>",
      "chat system prompt when a request has none (default: the one the run was instruction-tuned with, else the " +
        "paper's)",
    )
    .option("--no-system", "no system prompt")
    .addOption(
      new Option("--retrieve <mode>", "Retro: chunk (re-retrieve every chunk) | prompt | none").choices([
        "chunk",
        "prompt",
        "none",
      ]),
    )
    .option(
      "--passages <k>",
      "top-k passages retrieved by the user's question into the prompt (default: 2 for an instruction-tuned GPT or " +
        "a Retro with its CCA gate at 0, else 0)",
      intFlag("--passages", { min: 0, max: 16 }),
    )
    .option("--threads <n>", "kernel threads (per server)", intFlag("--threads", { min: 1, max: 256 }))
    .option(
      "--allow-updates",
      "enable POST /v1/documents: documents join the database (retro db add) and are retrieved at once",
    )
    .action(async (o) => {
      const opened = openCheckpoint(o.ckpt, { db: o.db });
      const { model, dir, run } = opened;
      let db = opened.db;
      const dbDir = db.dir;
      if (o.threads) model.engine.setThreads(o.threads);
      const retriever = db.manifest.index ? await Retriever.open(db) : null;
      const system = systemPromptFor(dir, o.system, SYSTEM_PROMPT);
      // InstructRetro's use: a tuned model whose decoder reads no neighbours gets its passages in the prompt
      const passages = o.passages ?? defaultPassages(model, run);
      const server = new RetroServer({
        model,
        tokenizer: db.tokenizer,
        retriever,
        name: o.name ?? path.basename(path.resolve(o.ckpt)),
        host: o.host,
        port: o.port,
        maxQueue: o.maxQueue,
        system,
        retrieve: o.retrieve,
        passages,
        updates: o.allowUpdates
          ? {
              dbDir,
              reopen: async () => {
                const fresh = new Database(dbDir);
                const r = await Retriever.open(fresh);
                db.close();
                db = fresh;
                return r;
              },
            }
          : undefined,
      });
      const addr = await server.listen();
      log(`serving ${dir} as "${server.o.name}" on http://${addr.address}:${addr.port}/v1 (Ctrl-C to stop)`);
      console.log(JSON.stringify({ url: `http://${addr.address}:${addr.port}/v1`, model: server.o.name }));
      await new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
      await server.close();
      db.close();
    });
}
