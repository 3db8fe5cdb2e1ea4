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
import * as os from "node:os";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import type { Model } from "../model/model.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { Retriever, Citation } from "../db/retriever.ts";
import { Generator, type GenerateOptions, type GenerateResult, type RetrieveMode } from "../generate/generate.ts";
import type { Message } from "../prompt/format.ts";
import { promptWithPassages } from "../prompt/passages.ts";
import { ERROR_KINDS, RetroError } from "../util/errors.ts";
import { addDocuments } from "../db/add.ts";
import { DEFAULT_SEED } from "../util/rng.ts";
import { SAMPLING_SETTINGS, httpFieldOf } from "../generate/sampling.ts";
import { checkSetting } from "../util/settings.ts";

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
}

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
  res: http.ServerResponse;
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
  ) {
    super(message);
  }
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

function errorBody(message: string, type: string, param: string | null = null): Json {
  return { error: { message, type, param, code: null } };
}

async function readBody(req: http.IncomingMessage, limit = 4 << 20): Promise<Json> {
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
  /** requests answered, refused with 503, cancelled by their client; generation batches run, requests that joined one already decoding (for the load benchmark) */
  readonly stats = { served: 0, refused: 0, cancelled: 0, batches: 0, joined: 0 };

  constructor(readonly o: ServeOptions) {
    this.gen = new Generator(o.model, o.tokenizer, o.retriever);
    this.server = http.createServer((req, res) => void this.handle(req, res));
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
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "http://localhost");
      const route = `${req.method} ${url.pathname.replace(/\/+$/, "")}`;
      switch (route) {
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
          return await this.retrieve(await readBody(req), res);
        case "POST /v1/documents": {
          if (!this.o.updates)
            throw new HttpError(403, "knowledge updates are off (start the server with --allow-updates)");
          const body = await readBody(req);
          return await this.enqueue(res, () => this.addDocs(body, res));
        }
        case "POST /v1/completions":
        case "POST /v1/chat/completions": {
          const body = await readBody(req);
          const chat = route.endsWith("chat/completions");
          const sampling = samplingOf(body);
          if (body.model !== undefined && body.model !== this.o.name)
            throw new HttpError(
              404,
              `model "${String(body.model)}" is not served here (this server serves "${this.o.name}")`,
              "model",
            );
          const { prompt, cites } = await this.withPassages(
            body,
            chat,
            sampling.maxTokens ?? SAMPLING_SETTINGS.maxTokens.default,
          );
          return await this.enqueue(res, { prompt, cites, sampling, chat, stream: body.stream === true, res });
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

  /** an error as OpenAI's error body (a stream already started is ended) */
  private fail(res: http.ServerResponse, e: unknown): void {
    if (res.headersSent) res.end();
    else if (e instanceof HttpError) {
      const type =
        e.status === 404 ? "not_found_error" : e.status === 403 ? "permission_error" : "invalid_request_error";
      sendJson(res, e.status, errorBody(e.message, type, e.param), e.status === 413 ? { connection: "close" } : {});
    } else if (e instanceof RetroError) {
      // the one error table: a lock held by another writer is a retryable 503, a corrupt artefact a 500, …
      const kind = ERROR_KINDS[e.kind];
      sendJson(res, kind.http, errorBody(e.message, kind.type), e.kind === "busy" ? { "retry-after": "1" } : {});
    } else sendJson(res, 500, errorBody(`internal error: ${(e as Error).message}`, "server_error"));
  }

  /**
   * Wait for the model; a full queue is a 503; a client gone before its turn is dropped without running.
   * `work`: a generation (batched with others of the same settings) or any other job on the model.
   */
  private enqueue(res: http.ServerResponse, work: GenRequest | (() => Promise<void>)): Promise<void> {
    const max = this.o.maxQueue ?? 16;
    if (this.busy && this.queue.length >= max) {
      this.stats.refused++;
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
    }
    return this.queue.length > 0;
  }

  /**
   * Take up to `room` generation requests with these settings from the head of the queue, in order. A request
   * with other settings (or another job) at the head stops the taking: nobody is overtaken, so nobody starves.
   */
  private takeSame(key: string, room: number): Job[] {
    const taken: Job[] = [];
    while (taken.length < room && this.dropGoneHead()) {
      const other = this.queue[0].work;
      if (typeof other === "function" || JSON.stringify(other.sampling) !== key) break;
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
        const batch = [job, ...this.takeSame(JSON.stringify(w.sampling), (this.o.maxBatch ?? 8) - 1)];
        await this.completeBatch(batch)
          .catch((e) => batch.forEach((j) => this.fail(j.res, e)))
          .finally(() => batch.forEach((j) => j.resolve()));
      }
    } finally {
      this.busy = false;
    }
  }

  /**
   * Decode a batch of requests together; each response is written (streamed) as its own sequence advances.
   * Continuous batching: before every decoding step, requests that arrived with the same settings join the
   * batch (up to maxBatch sequences in all), prefilled in the same forward as the others' next token.
   */
  private async completeBatch(jobs: Job[]): Promise<void> {
    this.stats.batches++;
    const model = this.o.name,
      created = Math.floor(Date.now() / 1000);
    const sampling = jobs[0].work as GenRequest,
      key = JSON.stringify(sampling.sampling),
      maxBatch = this.o.maxBatch ?? 8;
    const chunk = (st: { id: string; w: GenRequest }, text: string, finish: string | null, extra: Json = {}) =>
      st.w.chat
        ? {
            id: st.id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: [
              {
                index: 0,
                delta: text || finish === null ? { role: "assistant", content: text } : {},
                finish_reason: finish,
              },
            ],
            ...extra,
          }
        : {
            id: st.id,
            object: "text_completion",
            created,
            model,
            choices: [{ index: 0, text, finish_reason: finish, logprobs: null }],
            ...extra,
          };
    const start = (j: Job) => {
      const w = j.work as GenRequest;
      const st = {
        job: j,
        w,
        id: `${w.chat ? "chatcmpl" : "cmpl"}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
        retrieval: [...w.cites],
        closed: false,
        ended: false,
      };
      j.res.on("close", () => {
        if (!j.res.writableEnded) st.closed = true;
      });
      if (w.stream)
        j.res.writeHead(200, {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          connection: "keep-alive",
        });
      if (w.stream && w.cites.length)
        j.res.write(`data: ${JSON.stringify({ ...chunk(st, "", null), retrieval: w.cites })}\n\n`);
      return st;
    };
    const states = jobs.map(start);
    // requests next in line with the same settings join (sequence numbers follow the batch's, in order)
    const admit = (active: number) =>
      this.takeSame(key, maxBatch - active).map((q) => {
        const w = q.work as GenRequest;
        jobs.push(q);
        states.push(start(q));
        this.stats.joined++;
        return { prompt: w.prompt, seed: w.sampling.seed ?? DEFAULT_SEED };
      });
    // a model with its CCA gate at 0 reads no neighbours: retrieving them by chunk would cite what it never read
    const retrieve: RetrieveMode | undefined = !this.o.model.isRetro
      ? undefined
      : this.o.model.gate === 0
        ? "none"
        : this.o.retrieve;
    const opts: GenerateOptions = {
      ...sampling.sampling,
      retrieve,
      seeds: jobs.map(() => sampling.sampling.seed ?? DEFAULT_SEED),
      admit,
      cancelled: (seq: number) => states[seq].ended,
    };
    for await (const ev of this.gen.stream(
      states.map((s) => s.w.prompt),
      opts,
    )) {
      // decoding is synchronous work between microtasks: give the event loop a turn after each event, so that
      // new requests are accepted (and queued, joined or refused), written chunks flushed and a disconnect noticed
      await new Promise((r) => setImmediate(r));
      for (const st of states) if (st.closed && !st.ended) (st.ended = true), this.stats.cancelled++;
      if (states.every((st) => st.ended)) return; // every client gone: leaving the iterator stops the generation
      const st = states[ev.seq];
      if (st.ended) continue;
      const res = st.job.res;
      if (ev.type === "retrieval") {
        const r = { chunk: ev.chunk, query: ev.query, neighbours: ev.neighbours };
        st.retrieval.push(r);
        if (st.w.stream) res.write(`data: ${JSON.stringify({ ...chunk(st, "", null), retrieval: [r] })}\n\n`);
      } else if (ev.type === "text") {
        if (st.w.stream) res.write(`data: ${JSON.stringify(chunk(st, ev.text, null))}\n\n`);
      } else {
        st.ended = true;
        this.finish(st.w, res, st.id, created, ev.result, st.retrieval, (t, f, x) => chunk(st, t, f, x));
      }
    }
  }

  private finish(
    w: GenRequest,
    res: http.ServerResponse,
    id: string,
    created: number,
    r: GenerateResult,
    retrieval: RetrievalOut[],
    chunk: (text: string, finish: string | null, extra: Json) => Json,
  ): void {
    const finish = r.finish === "length" ? "length" : "stop";
    const usage = {
      prompt_tokens: r.promptTokens,
      completion_tokens: r.tokens.length,
      total_tokens: r.promptTokens + r.tokens.length,
    };
    this.stats.served++;
    if (w.stream) {
      res.write(`data: ${JSON.stringify(chunk("", finish, { usage }))}\n\n`);
      res.end("data: [DONE]\n\n");
      return;
    }
    const choice = w.chat
      ? { index: 0, message: { role: "assistant", content: r.text }, finish_reason: finish, logprobs: null }
      : { index: 0, text: r.text, finish_reason: finish, logprobs: null };
    sendJson(res, 200, {
      id,
      object: w.chat ? "chat.completion" : "text_completion",
      created,
      model: this.o.name,
      choices: [choice],
      usage,
      retrieval,
      truncated_prompt_tokens: r.truncated,
    });
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
    if (typeof name !== "string" || !/^[\w.-]{1,64}$/.test(name))
      throw new HttpError(400, "dataset must be a name of letters, digits, '.', '_' or '-'", "dataset");
    const u = this.o.updates!;
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "retro-docs-"));
    try {
      docs.forEach((d, i) =>
        fs.writeFileSync(path.join(tmp, `${String(i).padStart(6, "0")}.txt`), (d as Json).text as string),
      );
      const report = await addDocuments(u.dbDir, { name, source: "text", path: tmp, weight: 0 });
      const retriever = await u.reopen();
      this.o.retriever = retriever;
      this.gen = new Generator(this.o.model, this.o.tokenizer, retriever);
      sendJson(res, 200, { object: "update", ...report });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  private async retrieve(b: Json, res: http.ServerResponse): Promise<void> {
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
