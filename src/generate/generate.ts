/**
 * Text generation for GPT and Retro on the incremental decoder: several prompts decoded together, text
 * streamed as it is produced, Retro retrieving again from the database each time a chunk completes.
 *
 * Retrieval modes (Retro):
 *   - "chunk" (default with a database): every chunk of the context, prompt and generated alike, is searched by
 *     its own text when it completes, as in training — RETRO's behaviour at inference;
 *   - "prompt": one search by the whole prompt; every chunk reads those neighbours;
 *   - "none": the CCA gate is 0 for this generation (the decoder alone).
 * When the context reaches the model's positions it slides: the oldest half is dropped (whole chunks for
 * Retro, so chunk boundaries and the neighbours already retrieved stay valid) and the rest is prefilled again.
 */
import type { Model } from "../model/model.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { Citation, Retriever } from "../db/retriever.ts";
import { Decoder, type Feed, type Slot } from "./decoder.ts";
import { SAMPLING_SETTINGS, Sampler, checkSampling, type SamplingOptions } from "./sampling.ts";
import { RetroError } from "../util/errors.ts";
import { DEFAULT_SEED } from "../util/rng.ts";

export type RetrieveMode = "chunk" | "prompt" | "none";

export interface GenerateOptions extends SamplingOptions {
  /** stop before the first occurrence of any of these strings (not included in the text) */
  stop?: string[];
  /** Retro's retrieval (default: "chunk" with a retriever, else "none") */
  retrieve?: RetrieveMode;
  /** keep going past the end-of-document token (default: stop there) */
  ignoreEod?: boolean;
  /**
   * "prompt" mode with neighbours the caller chose: per prompt, [k·r] tokens every chunk reads (e.g. the
   * passages of a QA item, as Megatron's evaluation gives the encoder); a prompt without them is searched
   */
  neighbours?: (Int32Array | null)[];
  /** per prompt, its sampling seed (default seed + index: a server batching requests gives each its own) */
  seeds?: number[];
  /**
   * Continuous batching: called before every decoding step with the number of sequences still generating; the
   * prompts it returns join the batch at once (prefilled in the same forward as the others' next token), with
   * the same settings, and take the next sequence numbers (prompts.length, prompts.length + 1, …) in the events.
   */
  admit?: (active: number) => { prompt: string | number[]; seed?: number }[];
  /** a sequence whose consumer is gone: asked before every step; true ends it (finish "stop") and frees its place */
  cancelled?: (seq: number) => boolean;
  /**
   * Record each generated token's log-probability under the model (log-softmax of its logits: temperature,
   * top-k and top-p shape the draw, not the reported distribution), with this many most likely alternatives
   * (0: the chosen token's alone). Absent: none recorded.
   */
  logprobs?: number;
}

/** a generated token's log-probability and the most likely alternatives at its position */
export interface TokenLogprob {
  token: number;
  logprob: number;
  top: { token: number; logprob: number }[];
}

/** log-softmax of a logits row at `token`, and the `top` most likely tokens (highest first, ties: lower id) */
export function tokenLogprob(row: Float32Array, token: number, top: number): TokenLogprob {
  let mx = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > mx) mx = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - mx);
  const lse = mx + Math.log(sum);
  const best: number[] = [];
  if (top > 0) {
    // a sorted list of the best `top` ids so far (top ≤ 20: insertion beats sorting the vocabulary)
    for (let i = 0; i < row.length; i++) {
      if (best.length === top && row[i] <= row[best[top - 1]]) continue;
      let j = Math.min(best.length, top - 1);
      if (best.length < top) best.push(i);
      while (j > 0 && row[best[j - 1]] < row[i]) (best[j] = best[j - 1]), j--;
      best[j] = i;
    }
  }
  return { token, logprob: row[token] - lse, top: best.map((t) => ({ token: t, logprob: row[t] - lse })) };
}

export type FinishReason = "eod" | "stop" | "length";

export type GenerateEvent =
  /**
   * a retrieval: the neighbours chunk `chunk` (counted from the sequence's start) of sequence `seq` reads
   * (in "prompt" mode, one retrieval by the whole prompt: chunk −1)
   */
  | { type: "retrieval"; seq: number; chunk: number; query: string; neighbours: Citation[] }
  /** new text of sequence `seq`; with logprobs asked, the tokens whose text ends in it (a token held back — the
   * start of a stop string, part of a character — comes with the text that completes it; the tokens cut by a stop
   * string come with the last event, whose text may then be empty) */
  | { type: "text"; seq: number; text: string; logprobs?: TokenLogprob[] }
  | { type: "done"; seq: number; result: GenerateResult };

export interface GenerateResult {
  text: string;
  tokens: number[];
  /** prompt tokens read */
  promptTokens: number;
  /** prompt tokens dropped from the left because the prompt was longer than the model's positions */
  truncated: number;
  finish: FinishReason;
  /** retrievals made for this sequence */
  retrievals: number;
  /** per generated token (`logprobs` asked): its log-probability and the top alternatives */
  logprobs?: TokenLogprob[];
}

interface SeqState {
  /** index of the prompt */
  index: number;
  slot: Slot;
  /** tokens dropped from the front by window slides (chunk numbers in events count from the sequence start) */
  dropped: number;
  /** tokens to feed before the next one: the prompt, or the kept context after a slide, with its known neighbours */
  replay: { ids: number[]; nb: Map<number, Int32Array> } | null;
  sampler: Sampler;
  promptTokens: number;
  gen: number[];
  emitted: number;
  text: string;
  next: number;
  done: FinishReason | null;
  retrievals: number;
  /** "prompt" mode: the prompt's neighbours [k·r] */
  promptNbr: Int32Array | null;
  truncated: number;
  /** admitted since the last forward: its feed is its prompt (replay), no sampled token yet */
  fresh: boolean;
  /** per generated token, when logprobs are asked */
  lp: TokenLogprob[];
  /** the decoded text's length after each token of `lp`, and how many of `lp` the text events have carried */
  lpEnd: number[];
  lpSent: number;
}

export class Generator {
  readonly decoder: Decoder;
  constructor(
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    readonly retriever: Retriever | null = null,
  ) {
    if (model.config.vocab !== tokenizer.vocabSize)
      throw new RetroError(
        "mismatch",
        `model vocab ${model.config.vocab} ≠ tokenizer ${tokenizer.id} with ${tokenizer.vocabSize} ids`,
      );
    if (retriever && model.isRetro && retriever.db.m !== model.config.chunk)
      throw new RetroError("mismatch", `model chunk ${model.config.chunk} ≠ database chunk length ${retriever.db.m}`);
    this.decoder = new Decoder(model);
  }

  private mode(o: GenerateOptions): RetrieveMode {
    if (!this.model.isRetro) return "none";
    const mode = o.retrieve ?? (this.retriever ? "chunk" : "none");
    if (mode !== "none" && !this.retriever && !(mode === "prompt" && o.neighbours))
      throw new RetroError("usage", `retrieval "${mode}" needs a database (--db)`);
    return mode;
  }

  /** Generate for each prompt (text, or token ids already encoded); events in the order they happen. */
  async *stream(prompts: (string | number[])[], o: GenerateOptions = {}): AsyncGenerator<GenerateEvent> {
    checkSampling(o);
    const c = this.model.config;
    const maxTokens = o.maxTokens ?? SAMPLING_SETTINGS.maxTokens.default;
    const mode = this.mode(o);
    const stops = (o.stop ?? []).filter((s) => s.length > 0);
    const hold = stops.reduce((a, s) => Math.max(a, s.length - 1), 0);
    const keepGate = this.model.gate;
    if (this.model.isRetro && mode === "none") this.model.gate = 0;
    const pending: GenerateEvent[] = [];
    try {
      const seqs: SeqState[] = [];
      for (let i = 0; i < prompts.length; i++)
        seqs.push(await this.newSeq(i, prompts[i], o.seeds?.[i] ?? (o.seed ?? DEFAULT_SEED) + i, o, mode, pending));
      // prefill every prompt in one pass
      const first = await this.feeds(
        seqs.map((st) => ({ st, ids: [] })),
        mode,
        pending,
      );
      let logits = this.decoder.forward(first);
      yield* pending.splice(0);
      let active = seqs.slice(),
        count = seqs.length;
      while (active.length) {
        active.forEach((st, j) => {
          const row = logits.subarray(j * c.vocab, (j + 1) * c.vocab);
          const tok = st.sampler.pick(row);
          st.next = tok;
          if (tok === this.tokenizer.eod && !o.ignoreEod) return void (st.done = "eod");
          st.gen.push(tok);
          st.text = this.tokenizer.decode(st.gen);
          if (o.logprobs !== undefined) st.lp.push(tokenLogprob(row, tok, o.logprobs)), st.lpEnd.push(st.text.length);
          for (const s of stops) {
            const at = st.text.indexOf(s);
            if (at >= 0) {
              st.text = st.text.slice(0, at);
              st.done = "stop";
            }
          }
          if (!st.done && st.gen.length >= maxTokens) st.done = "length";
          if (!st.done && o.cancelled?.(st.index)) st.done = "stop";
        });
        for (const st of active) {
          const i = st.index;
          // hold back a tail that may be the start of a stop string or of a multi-byte character
          let upto = st.done ? st.text.length : Math.max(st.emitted, st.text.length - hold);
          while (!st.done && upto > st.emitted && st.text.charCodeAt(upto - 1) === 0xfffd) upto--;
          let lp: TokenLogprob[] | undefined;
          if (o.logprobs !== undefined) {
            let k = st.lpSent;
            while (k < st.lp.length && (st.done || st.lpEnd[k] <= upto)) k++;
            lp = st.lp.slice(st.lpSent, k);
            st.lpSent = k;
          }
          if (upto > st.emitted || lp?.length)
            yield { type: "text", seq: i, text: st.text.slice(st.emitted, upto), ...(lp ? { logprobs: lp } : {}) };
          st.emitted = Math.max(st.emitted, upto);
          if (st.done)
            yield {
              type: "done",
              seq: i,
              result: {
                text: st.text,
                tokens: st.gen.slice(),
                promptTokens: st.promptTokens,
                truncated: st.truncated,
                finish: st.done,
                retrievals: st.retrievals,
                ...(o.logprobs !== undefined ? { logprobs: st.lp.slice() } : {}),
              },
            };
        }
        active = active.filter((st) => !st.done);
        for (const j of o.admit?.(active.length) ?? []) {
          const i = count++;
          const st = await this.newSeq(i, j.prompt, j.seed ?? (o.seed ?? DEFAULT_SEED) + i, o, mode, pending);
          st.fresh = true;
          active.push(st);
        }
        if (!active.length) break;
        for (const st of active) if (!st.fresh && st.slot.pos + 1 > c.seq) this.slide(st);
        const feeds = await this.feeds(
          active.map((st) => ({ st, ids: st.fresh ? [] : [st.next] })),
          mode,
          pending,
        );
        for (const st of active) st.fresh = false;
        // a slid sequence is prefilled again: its feed holds the kept context and the new token
        logits = this.decoder.forward(feeds);
        yield* pending.splice(0);
      }
    } finally {
      this.model.gate = keepGate;
    }
  }

  /** A sequence's state for prompt i (truncated from the left to the model's positions; "prompt" mode: retrieved). */
  private async newSeq(
    i: number,
    pi: string | number[],
    seed: number,
    o: GenerateOptions,
    mode: RetrieveMode,
    pending: GenerateEvent[],
  ): Promise<SeqState> {
    const c = this.model.config,
      m = c.chunk;
    let ids = typeof pi === "string" ? this.tokenizer.encode(pi) : pi.slice();
    if (ids.length === 0) throw new RetroError("usage", `prompt ${i}: empty (nothing to continue)`);
    // a prompt longer than the model's positions keeps its end (truncated from the left; `promptTokens` says how
    // many were read, `truncated` how many were dropped), leaving room for one new token
    const room = c.seq - 1;
    let truncated = 0;
    if (ids.length > room) {
      const keep = this.model.isRetro ? Math.floor(room / m) * m || room : room;
      truncated = ids.length - keep;
      ids = ids.slice(truncated);
    }
    const st: SeqState = {
      index: i,
      slot: this.decoder.newSlot(),
      dropped: 0,
      replay: { ids, nb: new Map() },
      sampler: new Sampler({ ...o, seed }),
      promptTokens: ids.length,
      gen: [],
      emitted: 0,
      text: "",
      next: -1,
      done: null,
      retrievals: 0,
      promptNbr: null,
      truncated,
      fresh: false,
      lp: [],
      lpEnd: [],
      lpSent: 0,
    };
    const given = o.neighbours?.[i];
    if (mode === "prompt" && given) {
      if (given.length !== c.k * c.r)
        throw new RetroError(
          "mismatch",
          `prompt ${i}: ${given.length} neighbour tokens given, the model reads k·r = ${c.k * c.r}`,
        );
      st.promptNbr = given;
    } else if (mode === "prompt") {
      const query = typeof pi === "string" ? pi : this.tokenizer.decode(pi);
      const r = await this.retriever!.search([query], { keep: c.k });
      st.promptNbr = this.retriever!.db.neighbourBlock(r.ids, 1, c.k, c.k, c.r);
      st.retrievals++;
      pending.push({ type: "retrieval", seq: i, chunk: -1, query, neighbours: this.citations(r.ids, r.scores, 0) });
    }
    return st;
  }

  /** Generate for each prompt and return the results (no streaming). */
  async generate(prompts: (string | number[])[], o: GenerateOptions = {}): Promise<GenerateResult[]> {
    const out: GenerateResult[] = new Array(prompts.length);
    for await (const ev of this.stream(prompts, o)) if (ev.type === "done") out[ev.seq] = ev.result;
    return out;
  }

  private citations(ids: Int32Array, scores: Float32Array, row: number): Citation[] {
    const k = this.model.config.k,
      out: Citation[] = [];
    for (let t = 0; t < k; t++) {
      const id = ids[row * k + t];
      if (id >= 0) out.push(this.retriever!.citation(id, scores[row * k + t], this.model.config.r));
    }
    return out;
  }

  /** Drop the oldest half of the context (whole chunks for Retro) and queue the rest to be prefilled again. */
  private slide(st: SeqState): void {
    const c = this.model.config,
      m = this.model.isRetro ? c.chunk : 1;
    const drop = Math.max(m, Math.floor(c.seq / 2 / m) * m);
    const kept = st.slot.ids.slice(drop);
    const nb = new Map<number, Int32Array>();
    for (const [u, v] of st.slot.neighbours) if (u >= drop / m) nb.set(u - drop / m, v);
    this.decoder.reset(st.slot);
    st.dropped += drop;
    st.replay = { ids: kept, nb };
  }

  /** Feeds for the new tokens, with the neighbours of every chunk they complete (retrieved in one search). */
  private async feeds(
    items: { st: SeqState; ids: number[] }[],
    mode: RetrieveMode,
    events: GenerateEvent[],
  ): Promise<Feed[]> {
    const c = this.model.config,
      m = c.chunk,
      kr = c.k * c.r;
    const feeds: Feed[] = [];
    const wanted: { feed: Feed; u: number; tokens: number[]; st: SeqState }[] = [];
    for (const { st, ids: fresh } of items) {
      const ids = st.replay ? [...st.replay.ids, ...fresh] : fresh;
      const feed: Feed = { slot: st.slot, ids, neighbours: new Map(st.replay?.nb ?? []) };
      st.replay = null;
      feeds.push(feed);
      if (!this.model.isRetro || mode === "none") continue;
      const all = [...st.slot.ids, ...ids];
      for (const u of this.decoder.chunksCompleted(st.slot.pos, st.slot.pos + ids.length)) {
        if (feed.neighbours!.has(u)) continue;
        if (mode === "prompt") feed.neighbours!.set(u, st.promptNbr!);
        else wanted.push({ feed, u, tokens: all.slice(u * m, (u + 1) * m), st });
      }
    }
    if (wanted.length) {
      const r = await this.retriever!.retrieveChunks(
        wanted.map((w) => w.tokens),
        c.k,
        c.r,
      );
      wanted.forEach((w, q) => {
        w.feed.neighbours!.set(w.u, r.tokens.slice(q * kr, (q + 1) * kr));
        w.st.retrievals++;
        events.push({
          type: "retrieval",
          seq: w.st.index,
          chunk: w.u + w.st.dropped / m,
          query: this.tokenizer.decode(w.tokens),
          neighbours: this.citations(r.ids, r.scores, q),
        });
      });
    }
    return feeds;
  }
}
