/**
 * A retro-ts database as a LangChain.js retriever (`import { RetroRetriever } from "retro-ts/langchain"`), so that
 * a LangChain application retrieves from it like from any vector store: in process over an open database, or
 * over a running `retro serve` (its `POST /v1/retrieve`). `@langchain/core` is an optional peer dependency: only
 * this entry point imports it, and retro-ts installs and runs without it.
 */
import { BaseRetriever, type BaseRetrieverInput } from "@langchain/core/retrievers";
import { Document } from "@langchain/core/documents";
import type { Citation, Retriever } from "../db/retriever.ts";
import { RetroError } from "../util/errors.ts";

export interface RetroRetrieverInput extends BaseRetrieverInput {
  /** chunks per query (default 4) */
  k?: number;
  /** in process: a database's retriever (`Retriever.open(new Database(dir))`) */
  retriever?: Retriever;
  /** or a server: its base URL (`http://host:port/v1`) and API key, if it requires one */
  baseURL?: string;
  apiKey?: string;
}

/** Each chunk found becomes a Document: its text, and where it comes from (dataset, document, chunk, score). */
export class RetroRetriever extends BaseRetriever {
  override lc_namespace = ["retro_ts", "retrievers"];
  private readonly k: number;
  private readonly retriever?: Retriever;
  private readonly baseURL?: string;
  private readonly apiKey?: string;

  constructor(fields: RetroRetrieverInput) {
    super(fields);
    if (!fields.retriever === !fields.baseURL)
      throw new RetroError("usage", "RetroRetriever: give one of retriever (in process) or baseURL (a server)");
    this.k = fields.k ?? 4;
    this.retriever = fields.retriever;
    this.baseURL = fields.baseURL?.replace(/\/+$/, "");
    this.apiKey = fields.apiKey;
  }

  override async _getRelevantDocuments(query: string): Promise<Document[]> {
    const hits = this.retriever ? await this.retriever.searchText(query, this.k) : await this.fromServer(query);
    return hits.map(
      (h) =>
        new Document({
          pageContent: h.text,
          metadata: { dataset: h.dataset, document: h.document, chunk: h.chunk, score: h.score },
        }),
    );
  }

  private async fromServer(query: string): Promise<Citation[]> {
    const res = await fetch(`${this.baseURL}/retrieve`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
      },
      body: JSON.stringify({ query, k: this.k }),
    });
    const body = (await res.json()) as { data?: Citation[]; error?: { message: string } };
    if (!res.ok || !body.data)
      throw new RetroError("io", `retro serve answered ${res.status}: ${body.error?.message ?? "no data"}`);
    return body.data;
  }
}
