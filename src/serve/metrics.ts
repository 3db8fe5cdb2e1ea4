/**
 * The server's Prometheus metrics (`GET /metrics`, text format), through prom-client — the well-kept client
 * library — on a registry of the server's own (two servers in one process, as in the tests, do not share counts).
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"route" | "status">;
  readonly latency: Histogram<"route">;
  readonly ttft: Histogram;
  readonly batchSize: Histogram;
  readonly tokens: Counter<"kind">;
  readonly retrievalSeconds: Counter;
  readonly documents: Counter;
  readonly refused: Counter;
  readonly cancelled: Counter;

  constructor(state: { queued: () => number; busy: () => boolean }) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "retro_requests_total",
      help: "HTTP requests answered, by route and status",
      labelNames: ["route", "status"],
      registers,
    });
    this.latency = new Histogram({
      name: "retro_request_duration_seconds",
      help: "time from a request's arrival to its last byte, by route",
      labelNames: ["route"],
      buckets: [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.ttft = new Histogram({
      name: "retro_time_to_first_token_seconds",
      help: "generation requests: time from arrival to the first generated text",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.batchSize = new Histogram({
      name: "retro_batch_size",
      help: "sequences decoded together per generation batch (those that joined it included)",
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers,
    });
    this.tokens = new Counter({
      name: "retro_tokens_total",
      help: "tokens read (prompt) and generated (completion)",
      labelNames: ["kind"],
      registers,
    });
    this.retrievalSeconds = new Counter({
      name: "retro_retrieval_seconds_total",
      help: "time spent embedding queries and searching the index",
      registers,
    });
    this.documents = new Counter({
      name: "retro_documents_added_total",
      help: "documents added through POST /v1/documents",
      registers,
    });
    this.refused = new Counter({
      name: "retro_requests_refused_total",
      help: "generation requests refused with 503 (queue full)",
      registers,
    });
    this.cancelled = new Counter({
      name: "retro_requests_cancelled_total",
      help: "generation requests whose client left before the answer was complete",
      registers,
    });
    new Gauge({
      name: "retro_queue_depth",
      help: "requests waiting for the model",
      registers,
      collect() {
        this.set(state.queued());
      },
    });
    new Gauge({
      name: "retro_busy",
      help: "1 while the model is working on a batch or a document update",
      registers,
      collect() {
        this.set(state.busy() ? 1 : 0);
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
