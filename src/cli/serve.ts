/** `retro serve`: the OpenAI-compatible HTTP API (src/serve/server.ts). */
import * as path from "node:path";
import { Option, type Command } from "commander";
import { Database } from "../db/database.ts";
import { Retriever } from "../db/retriever.ts";
import { defaultPassages, openCheckpoint, systemPromptFor } from "../model/checkpoint.ts";
import { LIMITS, RetroServer } from "../serve/server.ts";
import { isLoopback } from "../serve/guard.ts";
import { RetroError } from "../util/errors.ts";
import { readTextFile } from "../util/fsx.ts";
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
      "enable POST /v1/documents: documents join the database (retro db add) and are retrieved at once; on an " +
        "address other than loopback it needs an API key",
    )
    .option("--api-key <key>", "require Authorization: Bearer KEY on every /v1 route (also RETRO_API_KEY)")
    .option("--api-key-file <file>", "read the API key from this file (its first line)")
    .option("--cors-origin <origin>", "allow browsers on this origin (Access-Control-Allow-Origin); off by default")
    .option(
      "--request-timeout <s>",
      `seconds for a request to arrive, body included (default ${LIMITS.requestTimeoutS}; headers: ` +
        `${LIMITS.headersTimeoutS})`,
      intFlag("--request-timeout", { min: 1, max: 3600 }),
    )
    .option(
      "--generation-timeout <s>",
      `seconds a generation may run before its answer is ended (default ${LIMITS.generationTimeoutS})`,
      intFlag("--generation-timeout", { min: 1, max: 86400 }),
    )
    .option(
      "--max-connections <n>",
      `open connections at most (default ${LIMITS.maxConnections})`,
      intFlag("--max-connections", { min: 1, max: 1 << 20 }),
    )
    .option(
      "--max-body-bytes <n>",
      `request body bytes at most (default ${LIMITS.maxBodyBytes})`,
      intFlag("--max-body-bytes", { min: 1024, max: 1 << 30 }),
    )
    .option(
      "--max-documents <n>",
      `documents per POST /v1/documents at most (default ${LIMITS.maxDocuments})`,
      intFlag("--max-documents", { min: 1, max: 1 << 20 }),
    )
    .addOption(
      new Option("--log-format <format>", "one access-log line per request on stderr")
        .choices(["json", "text", "none"])
        .default("text"),
    )
    .action(async (o) => {
      const apiKey = apiKeyOf(o.apiKey, o.apiKeyFile);
      if (o.allowUpdates && !isLoopback(o.host) && apiKey === undefined)
        throw new RetroError(
          "usage",
          `--allow-updates on ${o.host} would let anyone who reaches the port write into the database: give an ` +
            `API key (--api-key, --api-key-file or RETRO_API_KEY), or listen on 127.0.0.1`,
        );
      const opened = openCheckpoint(o.ckpt, { db: o.db });
      const { model, dir, run } = opened;
      let db = opened.db;
      const dbDir = db.dir;
      if (o.threads) model.engine.setThreads(o.threads);
      const retriever = db.manifest.index ? await Retriever.open(db) : null;
      const system = systemPromptFor(dir, o.system, SYSTEM_PROMPT);
      // InstructRetro's use: a tuned model whose decoder reads no neighbours gets its passages in the prompt
      const passages = o.passages ?? defaultPassages(model, run);
      const database = {
        dbDir,
        reopen: async () => {
          const fresh = new Database(dbDir);
          const r = await Retriever.open(fresh);
          db.close();
          db = fresh;
          return r;
        },
      };
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
        updates: o.allowUpdates ? database : undefined,
        database: retriever ? database : undefined,
        apiKey,
        corsOrigin: o.corsOrigin,
        logFormat: o.logFormat,
        limits: {
          ...(o.requestTimeout ? { requestTimeoutS: o.requestTimeout } : {}),
          ...(o.generationTimeout ? { generationTimeoutS: o.generationTimeout } : {}),
          ...(o.maxConnections ? { maxConnections: o.maxConnections } : {}),
          ...(o.maxBodyBytes ? { maxBodyBytes: o.maxBodyBytes } : {}),
          ...(o.maxDocuments ? { maxDocuments: o.maxDocuments } : {}),
        },
      });
      const addr = await server.listen();
      // SIGTERM (a service manager) or Ctrl-C: a graceful stop within the shutdown bound, exit 0; a second one
      // quits at once. Installed before the address is announced: a client that reads it and signals at once
      // (a test, a supervisor) must find the handler there, not Node's default (killed by the signal).
      const stopped = new Promise<void>((resolve) => {
        const stop = () => {
          process.once("SIGINT", () => process.exit(130));
          process.once("SIGTERM", () => process.exit(143));
          resolve();
        };
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      log(
        `serving ${dir} as "${server.o.name}" on http://${addr.address}:${addr.port}/v1` +
          `${apiKey === undefined ? "" : " (API key required)"} (Ctrl-C to stop)`,
      );
      console.log(JSON.stringify({ url: `http://${addr.address}:${addr.port}/v1`, model: server.o.name }));
      await stopped;
      log("stopping: finishing or ending the requests in flight");
      await server.shutdown();
      db.close();
      process.exit(0);
    });
}

/** The API key: --api-key, else the first line of --api-key-file, else RETRO_API_KEY; an empty key is refused. */
function apiKeyOf(flag: string | undefined, file: string | undefined): string | undefined {
  const key =
    flag ?? (file !== undefined ? readTextFile(file, "API key file").split("\n")[0].trim() : process.env.RETRO_API_KEY);
  if (key !== undefined && !key.trim()) throw new RetroError("usage", "the API key is empty");
  return key;
}
