/**
 * `retro serve`: an OpenAI-compatible HTTP API over a GPT or Retro checkpoint (node:http — the API is five
 * routes; a framework would add a dependency for routing we do not need).
 *
 *   POST /v1/completions         {prompt, max_tokens, temperature, top_k, top_p, stop, seed, stream}
 *   POST /v1/chat/completions    {messages, …} — the instruction-tuning format (System/User/Assistant)
 *   GET  /v1/models, GET /health, GET / (a chat page showing each answer's citations, src/serve/web/index.html)
 *   POST /v1/retrieve            {query, k} — the database's top-k chunks for a text
 *   POST /v1/documents           {documents: [{text}], dataset?} — add knowledge (off unless allowed): the
 *                                documents join the database (`retro db add`) and are retrieved at once
 *
 * Responses have OpenAI's shapes (`stream: true`: server-sent events ending in `data: [DONE]`), and a Retro
 * model's carry an extension field `retrieval`: per retrieval, the chunk it was made for and the neighbours read
 * (dataset, document, chunk id, score, text) — the citations of the answer. Requests queue for the model (one
 * generation at a time: the engine's buffers are the model's); the queue is bounded (503 with Retry-After when
 * full); a client that disconnects leaves the queue at once, or stops its generation mid-stream.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import type { Model } from "../model/model.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { Retriever, Citation } from "../db/retriever.ts";
import {
  Generator,
  type GenerateOptions,
  type GenerateResult,
  type RetrieveMode,
  type TokenLogprob,
} from "../generate/generate.ts";
import type { Message } from "../prompt/format.ts";
import { promptWithPassages } from "../prompt/passages.ts";
import { ERROR_KINDS, RetroError } from "../util/errors.ts";
import { addDocuments } from "../db/add.ts";
import { checkDatasetName } from "../db/config.ts";
import { DEFAULT_SEED } from "../util/rng.ts";
import { SAMPLING_SETTINGS, httpFieldOf } from "../generate/sampling.ts";
import { checkSetting } from "../util/settings.ts";
import { ServeMetrics } from "./metrics.ts";
import { keyMatches, redact } from "./guard.ts";

export interface ServeOptions {
  model: Model;
  tokenizer: Tokenizer;
  retriever: Retriever | null;
  /** the id /v1/models reports */
  name: string;
  host?: string;
  port?: number;
  /** requests waiting for the model at most (beyond the one running); more get 503 */
  maxQueue?: number;
  /** requests with the same sampling settings decoded together at most (default 8) */
  maxBatch?: number;
  /** chat system prompt when the request has none (null: none) */
  system: string | null;
  /** Retro's retrieval during generation (a model with its CCA gate at 0 never retrieves by chunk) */
  retrieve?: RetrieveMode;
  /**
   * Passages in the prompt (InstructRetro's use, and an instruction-tuned GPT's): the top-k passages retrieved by
   * the user's question go into the last user turn (chat) or before the prompt (completions), in the tuning
   * template, and are the answer's citations. 0 or absent: off. A request's `passages` field overrides it.
   */
  passages?: number;
  /** `POST /v1/documents` (off unless given): the database folder, and how to open its retriever again */
  updates?: { dbDir: string; reopen: () => Promise<Retriever> };
  /**
   * The database folder and how to open its retriever again, so that an update committed by another process
   * (`retro db add` from the CLI) is retrieved from at once, with no restart (default: `updates`').
   */
  database?: { dbDir: string; reopen: () => Promise<Retriever> };
  /** every `/v1/*` route requires `Authorization: Bearer KEY` (absent: open) */
  apiKey?: string;
  /** `Access-Control-Allow-Origin` for browsers on other origins (absent: no CORS headers) */
  corsOrigin?: string;
  /** limits (defaults in LIMITS) */
  limits?: Partial<typeof LIMITS>;
  /** one access-log line per request on stderr (default "none": the CLI passes its --log-format) */
  logFormat?: "json" | "text" | "none";
}

/**
 * What one request or connection may take. Header and body timeouts are node's own (checked every second),
 * the body cap is checked against a declared Content-Length before anything is read.
 */
export const LIMITS = {
  /** seconds for a request's headers to arrive */
  headersTimeoutS: 10,
  /** seconds for a whole request (headers and body) to arrive */
  requestTimeoutS: 30,
  /** seconds an idle keep-alive connection is kept */
  keepAliveTimeoutS: 5,
  /** open connections at most (more are refused by the socket layer) */
  maxConnections: 256,
  /** request body bytes at most */
  maxBodyBytes: 4 << 20,
  /** documents per POST /v1/documents at most */
  maxDocuments: 1000,
  /** seconds a generation may run before it is ended (finish "length") */
  generationTimeoutS: 300,
  /** seconds a shutdown waits for in-flight work before cutting connections */
  shutdownGraceS: 5,
  /** a stream's events are written at most this often (ms; the first at once): fewer system calls per token */
  streamIntervalMs: 15,
  /**
   * the decode loop gives the event loop a turn at most this often (ms): new requests are admitted, written chunks
   * flushed and disconnects noticed within it; a turn per token (~0.1 ms) cost a single streamed client 10–25 % of
   * the decode rate
   */
  yieldIntervalMs: 5,
};

interface RetrievalOut {
  chunk: number;
  query: string;
  neighbours: Citation[];
}

/** a completion request waiting for the model */
interface GenRequest {
  prompt: string;
  /** the passages the prompt holds (passage mode), cited before any chunk retrieval */
  cites: RetrievalOut[];
  sampling: GenerateOptions;
  chat: boolean;
  stream: boolean;
  /** choices (sequences decoded for this request, seeds seed, seed + 1, …) */
  n: number;
  /** stream_options.include_usage: a last chunk with the usage and no choices, as OpenAI sends it */
  includeUsage: boolean;
  /** when the request arrived (performance.now()), for the time to first token */
  arrived: number;
  res: http.ServerResponse;
}

/** the answer to one request: its choices (n), written when the last one ends */
interface Reply {
  job: Job;
  w: GenRequest;
  id: string;
  created: number;
  model: string;
  retrieval: RetrievalOut[];
  choices: (Json | null)[];
  /** choices still generating */
  open: number;
  promptTokens: number;
  completionTokens: number;
  truncated: number;
  /** its client has gone */
  closed: boolean;
  /** streamed events not yet written (coalesced: see `send`) and when the last write was */
  pending: string[];
  lastWrite: number;
}

/** one sequence being decoded: choice `choice` of a reply */
interface Seq {
  reply: Reply;
  choice: number;
  seed: number;
  ended: boolean;
  /** its first text was seen (time to first token) */
  first: boolean;
  text: string;
  /** streamed logprobs: the characters of the tokens already sent (completions' text_offset) */
  lpOffset: number;
}

/** a streamed chunk of one choice, in OpenAI's shape for the request's kind (`logprobs`: of this chunk's tokens) */
function chunkOf(
  reply: Reply,
  index: number,
  text: string,
  finish: string | null,
  extra: Json = {},
  logprobs: Json | null = null,
): Json {
  const base = { id: reply.id, created: reply.created, model: reply.model };
  return reply.w.chat
    ? {
        ...base,
        object: "chat.completion.chunk",
        choices: [
          {
            index,
            delta: text || finish === null ? { role: "assistant", content: text } : {},
            finish_reason: finish,
            ...(logprobs ? { logprobs } : {}),
          },
        ],
        ...extra,
      }
    : {
        ...base,
        object: "text_completion",
        choices: [{ index, text, finish_reason: finish, logprobs }],
        ...extra,
      };
}

interface Job {
  work: GenRequest | (() => Promise<void>);
  res: http.ServerResponse;
  gone: () => boolean;
  resolve: () => void;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** the routes counted by name in the metrics (anything else is "other": no unbounded label values) */
const ROUTES = new Set([
  "",
  "/index.html",
  "/health",
  "/metrics",
  "/v1/models",
  "/v1/completions",
  "/v1/chat/completions",
  "/v1/retrieve",
  "/v1/embeddings",
  "/v1/documents",
]);

/** the database manifest's identity (size, mtime, inode): an update by any process changes it */
function manifestStamp(dbDir: string): string | null {
  try {
    const st = fs.statSync(path.join(dbDir, "manifest.json"));
    return `${st.size}:${st.mtimeMs}:${st.ino}`;
  } catch {
    return null;
  }
}

/**
 * The alternatives per token to report, or undefined (no logprobs): completions' `logprobs` (an integer), chat's
 * `logprobs` (true) with `top_logprobs`; at most 20, as OpenAI allows.
 */
function logprobsOf(b: Json, chat: boolean): number | undefined {
  const int = (v: unknown, field: string) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 20)
      throw new HttpError(400, `${field} must be an integer in [0, 20]`, field);
    return v;
  };
  if (!chat) return b.logprobs === undefined || b.logprobs === null ? undefined : int(b.logprobs, "logprobs");
  if (b.logprobs !== undefined && b.logprobs !== null && typeof b.logprobs !== "boolean")
    throw new HttpError(400, "logprobs must be true or false", "logprobs");
  const top = b.top_logprobs === undefined || b.top_logprobs === null ? undefined : int(b.top_logprobs, "top_logprobs");
  if (top !== undefined && b.logprobs !== true)
    throw new HttpError(400, "top_logprobs needs logprobs: true", "top_logprobs");
  return b.logprobs === true ? (top ?? 0) : undefined;
}

/** `stream` (a boolean: "yes" is refused as OpenAI does) and `stream_options.include_usage` */
function streamOf(b: Json): { stream: boolean; includeUsage: boolean } {
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== "boolean")
    throw new HttpError(400, `stream must be true or false, got ${JSON.stringify(b.stream)}`, "stream");
  const so = b.stream_options;
  if (so !== undefined && so !== null) {
    if (typeof so !== "object" || Array.isArray(so))
      throw new HttpError(400, "stream_options must be an object", "stream_options");
    const iu = (so as Json).include_usage;
    if (iu !== undefined && typeof iu !== "boolean")
      throw new HttpError(400, "stream_options.include_usage must be true or false", "stream_options");
    if (b.stream !== true)
      throw new HttpError(400, "stream_options is only allowed with stream: true", "stream_options");
  }
  if (b.user !== undefined && typeof b.user !== "string") throw new HttpError(400, "user must be a string", "user");
  return { stream: b.stream === true, includeUsage: (so as Json | undefined)?.include_usage === true };
}

type Json = Record<string, unknown>;

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** the chat page (static: no build step); read once */
let page: Buffer | null = null;
function sendPage(res: http.ServerResponse): void {
  page ??= fs.readFileSync(new URL("./web/index.html", import.meta.url));
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": page.length });
  res.end(page);
}

function errorBody(message: string, type: string, param: string | null = null, code: string | null = null): Json {
  return { error: { message, type, param, code } };
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<Json> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit)
    throw new HttpError(413, `request body of ${declared} bytes declared, over the ${limit}-byte limit`);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const p of req) {
    size += (p as Buffer).length;
    if (size > limit) throw new HttpError(413, `request body over ${limit} bytes`);
    parts.push(p as Buffer);
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(parts).toString("utf8") || "{}");
  } catch (e) {
    throw new HttpError(400, `the body is not valid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new HttpError(400, "the body must be a JSON object");
  return v as Json;
}

/** OpenAI's sampling fields → GenerateOptions, read by the sampling table (bad values are 400s naming the field) */
function samplingOf(b: Json): GenerateOptions {
  const o: Record<string, unknown> = {};
  for (const [key, row] of Object.entries(SAMPLING_SETTINGS)) {
    const field = httpFieldOf(key),
      v = b[field];
    if (v === undefined || v === null) continue;
    // JSON numbers only: "0.5" is a string, refused as OpenAI does
    if (typeof v !== "number") throw new HttpError(400, `${field} must be a number, got ${JSON.stringify(v)}`, field);
    try {
      o[key] = checkSetting(row, v, field);
    } catch (e) {
      throw new HttpError(400, (e as Error).message, field);
    }
  }
  o.maxTokens ??= SAMPLING_SETTINGS.maxTokens.default;
  o.temperature ??= SAMPLING_SETTINGS.temperature.default;
  // vLLM's extension: keep generating past the end-of-document token
  if (b.ignore_eos !== undefined) {
    if (typeof b.ignore_eos !== "boolean") throw new HttpError(400, "ignore_eos must be true or false", "ignore_eos");
    o.ignoreEod = b.ignore_eos;
  }
  const stop = b.stop;
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === "string" ? [stop] : stop;
    if (!Array.isArray(list) || list.some((s) => typeof s !== "string") || list.length > 4)
      throw new HttpError(400, "stop must be a string or a list of up to 4 strings", "stop");
    o.stop = list as string[];
  }
  return o as GenerateOptions;
}

function messagesOf(b: Json): Message[] {
  const m = b.messages;
  if (!Array.isArray(m) || !m.length) throw new HttpError(400, "messages must be a non-empty list", "messages");
  return m.map((x, i) => {
    const r = x as Json;
    if (!r || !["system", "user", "assistant"].includes(r.role as string))
      throw new HttpError(400, `messages[${i}].role must be system, user or assistant`, "messages");
    if (typeof r.content !== "string") throw new HttpError(400, `messages[${i}].content must be a string`, "messages");
    return { role: r.role as Message["role"], content: r.content };
  });
}

export class RetroServer {
  readonly server: http.Server;
  private gen: Generator;
  private queue: Job[] = [];
  private busy = false;
  readonly created = Math.floor(Date.now() / 1000);
  /**
   * requests answered, refused with 503, cancelled by their client; generation batches run, requests that joined one
   * already decoding (for the load benchmark)
   */
  readonly stats = { served: 0, refused: 0, cancelled: 0, batches: 0, joined: 0 };
  readonly metrics: ServeMetrics;
  private readonly limits: typeof LIMITS;
  /** set by shutdown(): generation ends at the next step, new requests are refused */
  private stopping = false;
  /** the database manifest's identity when its retriever was opened (an update by another process changes it) */
  private dbSeen: string | null = null;

  constructor(readonly o: ServeOptions) {
    this.gen = new Generator(o.model, o.tokenizer, o.retriever);
    this.limits = { ...LIMITS, ...o.limits };
    const l = this.limits;
    this.server = http.createServer(
      {
        headersTimeout: l.headersTimeoutS * 1000,
        requestTimeout: l.requestTimeoutS * 1000,
        keepAliveTimeout: l.keepAliveTimeoutS * 1000,
        connectionsCheckingInterval: 1000,
        // one small write per token: with Nagle's algorithm on (node turns it off by default only when
        // createServer gets no options object) each waited for the client's delayed ACK, ~40 ms a token
        noDelay: true,
      },
      (req, res) => void this.handle(req, res),
    );
    this.server.maxConnections = l.maxConnections;
    this.metrics = new ServeMetrics({ queued: () => this.queue.length, busy: () => this.busy });
    const db = this.database;
    if (db) this.dbSeen = manifestStamp(db.dbDir);
  }

  private get database(): { dbDir: string; reopen: () => Promise<Retriever> } | undefined {
    return this.o.database ?? this.o.updates;
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once("error", (e) =>
        reject(
          new RetroError(
            "io",
            `cannot listen on ${this.o.host ?? "127.0.0.1"}:${this.o.port ?? 8080} (${(e as Error).message})`,
          ),
        ),
      );
      this.server.listen(this.o.port ?? 8080, this.o.host ?? "127.0.0.1", () =>
        resolve(this.server.address() as AddressInfo),
      );
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  /**
   * Graceful stop (SIGTERM, SIGINT): no new connections; generation ends at its next step (a stream gets its
   * final chunk and [DONE], a waiting request a 503); idle connections are closed at once, and every connection
   * left (a slow client) after `shutdownGraceS`. A document update in progress finishes (or, cut by the bound,
   * leaves the database as before: `db add` is atomic).
   */
  async shutdown(): Promise<void> {
    this.stopping = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    for (const j of this.queue.splice(0)) {
      if (!j.res.headersSent) this.fail(j.res, new HttpError(503, "the server is shutting down", null));
      j.resolve();
    }
    const bound = new Promise<void>((resolve) =>
      setTimeout(() => {
        this.server.closeAllConnections();
        resolve();
      }, this.limits.shutdownGraceS * 1000).unref(),
    );
    await Promise.race([closed, bound]);
    this.server.closeAllConnections();
  }

  /**
   * A committed update of the database by another process (`retro db add` from the CLI) is noticed before the
   * next request that retrieves: the manifest changed, so the retriever is opened again.
   */
  private async refreshRetriever(): Promise<void> {
    const db = this.database;
    if (!db) return;
    const now = manifestStamp(db.dbDir);
    if (now === this.dbSeen) return;
    this.dbSeen = now;
    const r = await db.reopen();
    this.o.retriever = r;
    this.gen = new Generator(this.o.model, this.o.tokenizer, r);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = performance.now();
    const url = new URL(req.url ?? "/", "http://localhost");
    const pathName = url.pathname.replace(/\/+$/, "");
    const route = `${req.method} ${pathName}`;
    res.on("close", () => this.logRequest(req, res, pathName, t0));
    if (this.o.corsOrigin) {
      res.setHeader("access-control-allow-origin", this.o.corsOrigin);
      res.setHeader("vary", "origin");
    }
    try {
      if (req.method === "OPTIONS" && this.o.corsOrigin) {
        res.writeHead(204, {
          "access-control-allow-methods": "GET, POST, OPTIONS",
          "access-control-allow-headers": "authorization, content-type",
          "access-control-max-age": "600",
        });
        return void res.end();
      }
      if (
        pathName.startsWith("/v1/") &&
        this.o.apiKey !== undefined &&
        !keyMatches(req.headers.authorization, this.o.apiKey)
      )
        throw new HttpError(
          401,
          "missing or incorrect API key (send Authorization: Bearer KEY)",
          null,
          "invalid_api_key",
        );
      if (this.stopping) throw new HttpError(503, "the server is shutting down");
      const limit = this.limits.maxBodyBytes;
      switch (route) {
        case "GET /metrics": {
          const text = await this.metrics.text();
          res.writeHead(200, { "content-type": this.metrics.contentType, "content-length": Buffer.byteLength(text) });
          return void res.end(text);
        }
        case "GET ":
        case "GET /index.html":
          return sendPage(res);
        case "GET /health":
          return sendJson(res, 200, { status: "ok", model: this.o.name, queued: this.queue.length, busy: this.busy });
        case "GET /v1/models":
          return sendJson(res, 200, {
            object: "list",
            data: [{ id: this.o.name, object: "model", created: this.created, owned_by: "retro-ts" }],
          });
        case "POST /v1/retrieve":
          return await this.retrieve(await readBody(req, limit), res);
        case "POST /v1/embeddings":
          return await this.embeddings(await readBody(req, limit), res);
        case "POST /v1/documents": {
          if (!this.o.updates)
            throw new HttpError(403, "knowledge updates are off (start the server with --allow-updates)");
          const body = await readBody(req, limit);
          return await this.enqueue(res, () => this.addDocs(body, res));
        }
        case "POST /v1/completions":
        case "POST /v1/chat/completions": {
          const body = await readBody(req, limit);
          const chat = route.endsWith("chat/completions");
          const sampling = samplingOf(body);
          const stream = streamOf(body);
          const lp = logprobsOf(body, chat);
          if (lp !== undefined) sampling.logprobs = lp;
          if (body.model !== undefined && body.model !== this.o.name)
            throw new HttpError(
              404,
              `model "${String(body.model)}" is not served here (this server serves "${this.o.name}")`,
              "model",
            );
          await this.refreshRetriever();
          const { prompt, cites } = await this.withPassages(
            body,
            chat,
            sampling.maxTokens ?? SAMPLING_SETTINGS.maxTokens.default,
          );
          const n = body.n ?? 1;
          if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > (this.o.maxBatch ?? 8))
            throw new HttpError(400, `n must be an integer in [1, ${this.o.maxBatch ?? 8}] (the batch size)`, "n");
          return await this.enqueue(res, { prompt, cites, sampling, chat, ...stream, n, arrived: t0, res });
        }
        default:
          throw new HttpError(404, `no route ${route}`);
      }
    } catch (e) {
      this.fail(res, e);
      // an oversize body was not read to its end: this connection cannot carry another request
      if (e instanceof HttpError && e.status === 413) res.on("finish", () => req.destroy());
    }
  }

  /**
   * The request's prompt, with the top-k passages retrieved by its question in passage mode: chat puts them into
   * the last user turn ("title: …, source: …" blocks, then the question: the tuning template), completions before
   * the prompt. The passages share what the model's positions leave after the question and `maxTokens`.
   */
  private async withPassages(
    body: Json,
    chat: boolean,
    maxTokens: number,
  ): Promise<{ prompt: string; cites: RetrievalOut[] }> {
    const k = body.passages === undefined || body.passages === null ? (this.o.passages ?? 0) : body.passages;
    if (typeof k !== "number" || !Number.isInteger(k) || k < 0 || k > 16)
      throw new HttpError(400, "passages must be an integer in [0, 16]", "passages");
    const messages = chat ? messagesOf(body) : undefined;
    if (messages && messages[messages.length - 1].role !== "user")
      throw new HttpError(400, "the last message must be the user's", "messages");
    const r = await promptWithPassages(this.o.retriever, this.o.tokenizer, {
      messages,
      prompt: messages ? undefined : promptOf(body),
      system: this.o.system,
      topK: k,
      room: this.o.model.config.seq - maxTokens,
    });
    if (!r.passages.length) return { prompt: r.prompt, cites: [] };
    const neighbours = r.passages.map((p) => ({
      chunk: p.chunk,
      dataset: p.dataset,
      document: p.document,
      score: p.score,
      text: p.text,
    }));
    return { prompt: r.prompt, cites: [{ chunk: -1, query: r.question, neighbours }] };
  }

  /**
   * An error as OpenAI's error body (a stream already started is ended). Messages are redacted: no absolute path
   * or process id reaches a client.
   */
  private fail(res: http.ServerResponse, e: unknown): void {
    if (res.headersSent) res.end();
    else if (e instanceof HttpError) {
      const type =
        e.status === 401 || e.status === 404
          ? e.status === 404
            ? "not_found_error"
            : "invalid_request_error"
          : e.status === 403
            ? "permission_error"
            : e.status === 503
              ? "server_error"
              : "invalid_request_error";
      sendJson(
        res,
        e.status,
        errorBody(redact(e.message), type, e.param, e.code),
        e.status === 413 ? { connection: "close" } : e.status === 503 ? { "retry-after": "1" } : {},
      );
    } else if (e instanceof RetroError) {
      // the one error table: a lock held by another writer is a retryable 503, a corrupt artefact a 500, …
      const kind = ERROR_KINDS[e.kind];
      sendJson(
        res,
        kind.http,
        errorBody(redact(e.message), kind.type),
        e.kind === "busy" ? { "retry-after": "1" } : {},
      );
    } else sendJson(res, 500, errorBody(`internal error: ${redact((e as Error).message)}`, "server_error"));
  }

  /** one access-log line per request (method, path, status, bytes, milliseconds; no key, path or PID) */
  private logRequest(req: http.IncomingMessage, res: http.ServerResponse, pathName: string, t0: number): void {
    const ms = performance.now() - t0;
    const route = ROUTES.has(pathName) ? pathName : "other";
    this.metrics.requests.inc({ route, status: String(res.statusCode) });
    this.metrics.latency.observe({ route }, ms / 1000);
    const fmt = this.o.logFormat ?? "none";
    if (fmt === "none") return;
    const line = {
      time: new Date().toISOString(),
      method: req.method,
      path: route === "other" ? "(other)" : pathName,
      status: res.statusCode,
      ms: Math.round(ms * 10) / 10,
      completed: res.writableEnded,
    };
    process.stderr.write(
      fmt === "json"
        ? `${JSON.stringify(line)}\n`
        : `${line.time} ${line.method} ${line.path} ${line.status} ${line.ms} ms${line.completed ? "" : " (cut)"}\n`,
    );
  }

  /**
   * Wait for the model; a full queue is a 503; a client gone before its turn is dropped without running.
   * `work`: a generation (batched with others of the same settings) or any other job on the model.
   */
  private enqueue(res: http.ServerResponse, work: GenRequest | (() => Promise<void>)): Promise<void> {
    const max = this.o.maxQueue ?? 16;
    if (this.busy && this.queue.length >= max) {
      this.stats.refused++;
      this.metrics.refused.inc();
      sendJson(
        res,
        503,
        errorBody(`the server is busy (${this.queue.length} requests waiting); retry later`, "server_error"),
        { "retry-after": "1" },
      );
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let gone = false;
      res.on("close", () => {
        if (!res.writableEnded) gone = true;
      });
      this.queue.push({ work, res, gone: () => gone, resolve });
      void this.pump();
    });
  }

  /** Drop the requests at the head of the queue whose clients have gone (counted as cancelled); is one left? */
  private dropGoneHead(): boolean {
    while (this.queue.length && this.queue[0].gone()) {
      this.queue.shift()!.resolve();
      this.stats.cancelled++;
      this.metrics.cancelled.inc();
    }
    return this.queue.length > 0;
  }

  /**
   * Take up to `room` generation requests with these settings from the head of the queue, in order. A request
   * with other settings (or another job) at the head stops the taking: nobody is overtaken, so nobody starves.
   */
  private takeSame(key: string, room: number): Job[] {
    const taken: Job[] = [];
    let seqs = 0; // a request with n choices takes n places
    while (this.dropGoneHead()) {
      const other = this.queue[0].work;
      if (typeof other === "function" || JSON.stringify(other.sampling) !== key || seqs + other.n > room) break;
      seqs += other.n;
      taken.push(this.queue.shift()!);
    }
    return taken;
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.dropGoneHead()) {
        const job = this.queue.shift()!;
        const w = job.work;
        if (typeof w === "function") {
          await w()
            .catch((e) => this.fail(job.res, e))
            .finally(job.resolve);
          continue;
        }
        // the requests next in line with the same settings are decoded together, one batch
        const batch = [job, ...this.takeSame(JSON.stringify(w.sampling), (this.o.maxBatch ?? 8) - w.n)];
        await this.completeBatch(batch)
          .catch((e) => batch.forEach((j) => this.fail(j.res, e)))
          .finally(() => batch.forEach((j) => j.resolve()));
      }
    } finally {
      this.busy = false;
    }
  }

  /**
   * Decode a batch of requests together; each response is written (streamed) as its own sequences advance.
   * Continuous batching: before every decoding step, requests that arrived with the same settings join the
   * batch (up to maxBatch sequences in all), prefilled in the same forward as the others' next token. A request
   * with `n` > 1 is n sequences (seeds seed, seed + 1, …), its choices answered together.
   */
  private async completeBatch(jobs: Job[]): Promise<void> {
    this.stats.batches++;
    const model = this.o.name,
      created = Math.floor(Date.now() / 1000);
    const head = jobs[0].work as GenRequest,
      key = JSON.stringify(head.sampling),
      maxBatch = this.o.maxBatch ?? 8;
    const states: Seq[] = [];
    const start = (j: Job): Seq[] => {
      const w = j.work as GenRequest;
      const reply: Reply = {
        job: j,
        w,
        id: `${w.chat ? "chatcmpl" : "cmpl"}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
        created,
        model,
        retrieval: [...w.cites],
        choices: new Array(w.n).fill(null),
        open: w.n,
        promptTokens: 0,
        completionTokens: 0,
        truncated: 0,
        closed: false,
        pending: [],
        lastWrite: -Infinity,
      };
      j.res.on("close", () => {
        if (!j.res.writableEnded) reply.closed = true;
      });
      if (w.stream) {
        j.res.writeHead(200, {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          connection: "keep-alive",
        });
        if (w.cites.length) this.send(reply, { ...chunkOf(reply, 0, "", null), retrieval: w.cites });
      }
      const seed = w.sampling.seed ?? DEFAULT_SEED;
      return Array.from({ length: w.n }, (_, choice) => ({
        reply,
        choice,
        seed: seed + choice,
        ended: false,
        first: false,
        lpOffset: 0,
        text: "",
      }));
    };
    for (const j of jobs) states.push(...start(j));
    // requests next in line with the same settings join (sequence numbers follow the batch's, in order)
    const admit = (active: number) =>
      this.takeSame(key, maxBatch - active).flatMap((q) => {
        jobs.push(q);
        this.stats.joined++;
        const added = start(q);
        states.push(...added);
        return added.map((st) => ({ prompt: st.reply.w.prompt, seed: st.seed }));
      });
    // a model with its CCA gate at 0 reads no neighbours: retrieving them by chunk would cite what it never read
    const retrieve: RetrieveMode | undefined = !this.o.model.isRetro
      ? undefined
      : this.o.model.gate === 0
        ? "none"
        : this.o.retrieve;
    const opts: GenerateOptions = {
      ...head.sampling,
      retrieve,
      seeds: states.map((st) => st.seed),
      admit,
      cancelled: (seq: number) => states[seq].ended,
    };
    const deadline = performance.now() + this.limits.generationTimeoutS * 1000;
    const retrieval0 = this.gen.retriever ? this.gen.retriever.timing.embedS + this.gen.retriever.timing.searchS : 0;
    let lastYield = performance.now();
    try {
      for await (const ev of this.gen.stream(
        states.map((st) => st.reply.w.prompt),
        opts,
      )) {
        // decoding is synchronous work between microtasks: give the event loop a turn every yieldIntervalMs, so
        // that new requests are accepted (and queued, joined or refused), written chunks flushed and a disconnect
        // noticed
        if (performance.now() - lastYield >= this.limits.yieldIntervalMs) {
          await new Promise((r) => setImmediate(r));
          lastYield = performance.now();
        }
        for (const st of states)
          if (st.reply.closed && !st.ended) {
            st.ended = true;
            if (st.choice === 0) this.stats.cancelled++, this.metrics.cancelled.inc();
          }
        // a shutdown, or a generation past its deadline: every answer still open ends here, cleanly
        if (this.stopping || performance.now() > deadline) {
          for (const st of states) if (!st.ended) (st.ended = true), this.endChoice(st, null);
          return;
        }
        if (states.every((st) => st.ended)) return; // every client gone: leaving the iterator stops the generation
        const st = states[ev.seq];
        if (st.ended) continue;
        const reply = st.reply;
        if (ev.type === "retrieval") {
          const r = { chunk: ev.chunk, query: ev.query, neighbours: ev.neighbours };
          reply.retrieval.push(r);
          if (reply.w.stream) this.send(reply, { ...chunkOf(reply, st.choice, "", null), retrieval: [r] });
        } else if (ev.type === "text") {
          if (!st.first) {
            st.first = true;
            if (st.choice === 0) this.metrics.ttft.observe((performance.now() - reply.w.arrived) / 1000);
          }
          st.text += ev.text;
          if (reply.w.stream) {
            let lp: Json | null = null;
            if (ev.logprobs) {
              const out = this.logprobsBody(ev.logprobs, reply.w.chat, st.lpOffset);
              lp = out.body;
              st.lpOffset = out.end;
            }
            this.send(reply, chunkOf(reply, st.choice, ev.text, null, {}, lp));
          }
        } else {
          st.ended = true;
          this.endChoice(st, ev.result);
        }
      }
    } finally {
      this.metrics.batchSize.observe(states.length);
      if (this.gen.retriever) {
        const t = this.gen.retriever.timing;
        this.metrics.retrievalSeconds.inc(Math.max(0, t.embedS + t.searchS - retrieval0));
      }
    }
  }

  /**
   * Stream one server-sent event of a reply. A write is a system call (~90 µs here, a fifth of a decode step of
   * the demo's model): events are coalesced and written at most every `streamIntervalMs` — the first one at once
   * (the time to first token is not delayed) — unless `hold` keeps them for the write that ends the reply.
   */
  private send(reply: Reply, event: Json, hold = false): void {
    reply.pending.push(`data: ${JSON.stringify(event)}\n\n`);
    const now = performance.now();
    if (hold || now - reply.lastWrite < this.limits.streamIntervalMs) return;
    reply.job.res.write(reply.pending.splice(0).join(""));
    reply.lastWrite = now;
  }

  /**
   * One choice of a reply is complete (`r`), or ended by the server (null: a shutdown, the generation deadline —
   * finish "length", the text so far). A stream gets the choice's finish chunk at once; the reply is closed (the
   * JSON body, or the usage chunk and [DONE]) when its last choice ends.
   */
  private endChoice(st: Seq, r: GenerateResult | null): void {
    const reply = st.reply,
      w = reply.w,
      res = reply.job.res;
    const finish = r === null || r.finish === "length" ? "length" : "stop";
    const text = r ? r.text : st.text;
    if (r) {
      // the prompt is read once per choice, counted once per reply (as OpenAI counts n)
      if (st.choice === 0) reply.promptTokens = r.promptTokens;
      reply.completionTokens += r.tokens.length;
      reply.truncated = Math.max(reply.truncated, r.truncated);
      this.metrics.tokens.inc({ kind: "prompt" }, st.choice === 0 ? r.promptTokens : 0);
      this.metrics.tokens.inc({ kind: "completion" }, r.tokens.length);
    }
    const logprobs = r?.logprobs ? this.logprobsBody(r.logprobs, w.chat).body : null;
    reply.choices[st.choice] = w.chat
      ? { index: st.choice, message: { role: "assistant", content: text }, finish_reason: finish, logprobs }
      : { index: st.choice, text, finish_reason: finish, logprobs };
    reply.open--;
    if (res.writableEnded || res.destroyed) return;
    const usage = {
      prompt_tokens: reply.promptTokens,
      completion_tokens: reply.completionTokens,
      total_tokens: reply.promptTokens + reply.completionTokens,
    };
    if (w.stream) {
      // each choice's finish chunk (the last one also carries the usage); with stream_options.include_usage,
      // OpenAI's extra last chunk: no choices, the usage
      const extra = reply.open === 0 && r ? { usage } : {};
      this.send(reply, chunkOf(reply, st.choice, "", finish, extra), reply.open === 0);
      if (reply.open > 0) return;
      if (w.includeUsage) this.send(reply, { ...chunkOf(reply, 0, "", null, { usage }), choices: [] }, true);
      res.end(`${reply.pending.splice(0).join("")}data: [DONE]\n\n`);
    } else {
      if (reply.open > 0) return;
      sendJson(res, 200, {
        id: reply.id,
        object: w.chat ? "chat.completion" : "text_completion",
        created: reply.created,
        model: reply.model,
        choices: reply.choices,
        usage,
        retrieval: reply.retrieval,
        truncated_prompt_tokens: reply.truncated,
      });
    }
    if (r) this.stats.served++;
  }

  /**
   * OpenAI's logprobs object: chat's {content: [{token, logprob, bytes, top_logprobs}]}, completions' lists (a
   * streamed chunk's text_offset counts from `offset0`, the characters of the tokens sent before it); `end`: the
   * offset after these tokens, the next chunk's `offset0`
   */
  private logprobsBody(lp: TokenLogprob[], chat: boolean, offset0 = 0): { body: Json; end: number } {
    const tok = this.o.tokenizer;
    const str = (t: number) => tok.decode([t]);
    // a token that holds part of a UTF-8 character decodes to U+FFFD, as its neighbours in the top list may: named
    // by its bytes as OpenAI does ("bytes:\xe2\x80"), so that no two alternatives share a key
    const name = (t: number) => {
      const s = str(t);
      if (!s.includes("\ufffd")) return s;
      const b = tok.tokenBytes?.(t);
      return b ? `bytes:${[...b].map((x) => `\\x${x.toString(16).padStart(2, "0")}`).join("")}` : `token:${t}`;
    };
    const bytesOf = (t: number) => [...(tok.tokenBytes?.(t) ?? Buffer.from(str(t)))];
    let offset = offset0;
    const textOffset = lp.map((x) => {
      const at = offset;
      offset += str(x.token).length;
      return at;
    });
    if (chat) {
      const entry = (t: number, logprob: number) => ({ token: name(t), logprob, bytes: bytesOf(t) });
      const content = lp.map((x) => ({
        ...entry(x.token, x.logprob),
        top_logprobs: x.top.map((a) => entry(a.token, a.logprob)),
      }));
      return { body: { content }, end: offset };
    }
    const body = {
      tokens: lp.map((x) => name(x.token)),
      token_logprobs: lp.map((x) => x.logprob),
      top_logprobs: lp.map((x) => Object.fromEntries(x.top.map((a) => [name(a.token), a.logprob]))),
      text_offset: textOffset,
    };
    return { body, end: offset };
  }

  /** Add documents to the database (a new retrieval-only dataset) and retrieve from it at once, no restart. */
  private async addDocs(b: Json, res: http.ServerResponse): Promise<void> {
    const docs = b.documents;
    if (
      !Array.isArray(docs) ||
      !docs.length ||
      docs.some((d) => typeof (d as Json)?.text !== "string" || !((d as Json).text as string).trim())
    ) {
      throw new HttpError(400, "documents must be a non-empty list of {text}", "documents");
    }
    const name = b.dataset === undefined ? `update-${Date.now().toString(36)}` : b.dataset;
    if (typeof name !== "string") throw new HttpError(400, "dataset must be a string", "dataset");
    try {
      checkDatasetName(name, "dataset"); // the rule `retro db add --name` and db build follow
    } catch (e) {
      throw new HttpError(400, (e as Error).message, "dataset");
    }
    if (docs.length > this.limits.maxDocuments)
      throw new HttpError(
        413,
        `${docs.length} documents in one request, over the limit of ${this.limits.maxDocuments}`,
        "documents",
      );
    const u = this.o.updates!;
    // the texts go straight into the add (no temporary file per document)
    const texts = docs.map((d) => (d as Json).text as string);
    const report = await addDocuments(u.dbDir, { name, source: "text", path: `request ${name}`, weight: 0 }, { texts });
    const retriever = await u.reopen();
    this.o.retriever = retriever;
    this.gen = new Generator(this.o.model, this.o.tokenizer, retriever);
    this.dbSeen = manifestStamp(u.dbDir);
    this.metrics.documents.inc(report.documents);
    sendJson(res, 200, { object: "update", ...report });
  }

  /**
   * `POST /v1/embeddings` {input: string | string[]}: the database's embedder (the vectors its index holds),
   * OpenAI's shape. A BM25 database has no embedder: 400.
   */
  private async embeddings(b: Json, res: http.ServerResponse): Promise<void> {
    await this.refreshRetriever();
    const r = this.o.retriever;
    if (!r) throw new HttpError(400, "this server has no database (start it with --db)");
    if (!r.embedder)
      throw new HttpError(400, "this database's index reads words (BM25): it has no embedder to embed with", "input");
    const input = typeof b.input === "string" ? [b.input] : b.input;
    if (!Array.isArray(input) || !input.length || input.some((x) => typeof x !== "string") || input.length > 2048)
      throw new HttpError(400, "input must be a string or a list of 1 to 2048 strings", "input");
    const format = b.encoding_format ?? "float";
    if (format !== "float" && format !== "base64")
      throw new HttpError(400, 'encoding_format must be "float" or "base64"', "encoding_format");
    const texts = input as string[];
    const vecs = await r.embedder.embed(texts);
    const dim = r.embedder.dim;
    const tokens = texts.reduce((a, t) => a + this.o.tokenizer.encode(t).length, 0);
    sendJson(res, 200, {
      object: "list",
      model: r.embedder.id,
      data: texts.map((_, i) => {
        const v = vecs.slice(i * dim, (i + 1) * dim);
        // base64: the float32 values' little-endian bytes (what the openai clients ask for by default)
        const embedding = format === "base64" ? Buffer.from(v.buffer).toString("base64") : Array.from(v);
        return { object: "embedding", index: i, embedding };
      }),
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  }

  private async retrieve(b: Json, res: http.ServerResponse): Promise<void> {
    await this.refreshRetriever();
    if (!this.o.retriever) throw new HttpError(400, "this server has no database (start it with --db)");
    if (typeof b.query !== "string" || !b.query.trim())
      throw new HttpError(400, "query must be a non-empty string", "query");
    const k = b.k === undefined ? 5 : b.k;
    if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > 100)
      throw new HttpError(400, "k must be an integer in [1, 100]", "k");
    sendJson(res, 200, { object: "list", query: b.query, data: await this.o.retriever.searchText(b.query, k) });
  }
}

function promptOf(b: Json): string {
  const p = b.prompt;
  if (typeof p === "string" && p.length) return p;
  if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string" && p[0].length) return p[0];
  throw new HttpError(400, "prompt must be a non-empty string (one prompt per request)", "prompt");
}
