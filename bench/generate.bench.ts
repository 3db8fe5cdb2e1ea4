/**
 * Greedy decoding speed against PyTorch (../shared/peers/torch_generate.py), same models, same run:
 *   - GPT (vocab 8192, d 256, 4 layers, seq 256), prompt 64, 192 new tokens, batch 1 and 8: our KV-cache decoder
 *     against the peer's KV-cache loop (target: ≥ 2×);
 *   - Retro (6 layers, CCA in layer 6, chunk 64, k 2, r 128): our incremental decoder, retrieving from the
 *     database each time a chunk completes (embed + ANN search + neighbour tokens + encoder), against the peer's
 *     recomputation with fixed neighbours (Megatron's way; target ≥ 10×) and against our own 6-layer GPT
 *     (target ≥ 0.5×). The retrieval is real when a database with an 8192-id tokenizer and chunk 64 is at
 *     --db (default runs/default-db, what `retro db build --out runs/default-db` makes); else random neighbour
 *     tokens are used and the output says so.
 * Weights are random; each of ours is the best of `reps` runs at 1 and 2 threads; the peer runs with this machine's
 * OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE and with both unset (both printed, ratios against the faster). Exits 1 when a
 * target is missed.
 *
 *   npm run bench:generate [-- --quick] [-- --db DIR] [-- --no-peer]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadEngine } from "../src/engine/native.ts";
import { resolveModelConfig, type ModelConfig } from "../src/model/config.ts";
import { Model } from "../src/model/model.ts";
import { Decoder, type Feed } from "../src/generate/decoder.ts";
import { argmax } from "../src/generate/sampling.ts";
import { Database } from "../src/db/database.ts";
import { Retriever } from "../src/db/retriever.ts";
import { Rng } from "../src/util/rng.ts";
import { peerAvailable, runPeerBothEnvs, table } from "./common.ts";

const { values: a } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    db: { type: "string", default: "runs/default-db" },
    "no-peer": { type: "boolean", default: false },
    one: { type: "string" },
  },
});
process.env.RETRO_QUIET ??= "1";
const PROMPT = 64,
  NEW = a.quick ? 64 : 192,
  REPS = a.quick ? 1 : 3;
const GPT = { model: "gpt", vocab: 8192, d: 256, heads: 4, layers: 4, seq: 256 };
const GPT6 = { ...GPT, layers: 6 };
const RETRO = { ...GPT, layers: 6, model: "retro", chunk: 64, k: 2, r: 128, cca_layers: [6], retrieval_rope: true };

/** the database's Retriever when it fits the reference Retro (8192 ids, chunk 64), else null and why */
async function openRetriever(): Promise<{ retriever: Retriever | null; why: string }> {
  if (!fs.existsSync(path.join(a.db!, "manifest.json")))
    return { retriever: null, why: `no database at ${a.db} (build one: retro db build --out ${a.db})` };
  const db = new Database(a.db!);
  if (db.tokenizer.vocabSize !== 8192 || db.m !== 64 || !db.manifest.index)
    return { retriever: null, why: `${a.db} is not an 8192-id, chunk-64 database with an index` };
  return { retriever: await Retriever.open(db), why: "" };
}
let retriever: Retriever | null = null;

interface Run {
  tokensPerS: number;
  prefillS: number;
  retrievals: number;
  embedMs: number;
  searchMs: number;
  encodeMs: number;
  checksum: number;
}

async function decode(cfg: ModelConfig, model: Model, batch: number): Promise<Run> {
  const dec = new Decoder(model);
  const rng = new Rng(1234),
    kr = cfg.k * cfg.r,
    m = cfg.chunk;
  const slots = Array.from({ length: batch }, () => dec.newSlot());
  const prompts = slots.map(() => Array.from({ length: PROMPT }, () => rng.int(cfg.vocab)));
  let retrievals = 0;
  const t = retriever?.timing,
    e0 = { embed: t?.embedS ?? 0, search: t?.searchS ?? 0, encode: dec.timing.encodeS };
  const neighboursFor = async (feeds: Feed[]) => {
    if (!model.isRetro) return;
    const want: { f: Feed; u: number; toks: number[] }[] = [];
    for (const f of feeds) {
      const all = [...f.slot.ids, ...Array.from(f.ids)];
      for (const u of dec.chunksCompleted(f.slot.pos, f.slot.pos + f.ids.length))
        want.push({ f, u, toks: all.slice(u * m, (u + 1) * m) });
    }
    if (!want.length) return;
    const nb = retriever
      ? (
          await retriever.retrieveChunks(
            want.map((w) => w.toks),
            cfg.k,
            cfg.r,
          )
        ).tokens
      : Int32Array.from({ length: want.length * kr }, () => rng.int(cfg.vocab));
    retrievals += want.length;
    want.forEach((w, q) => (w.f.neighbours ??= new Map()).set(w.u, nb.slice(q * kr, (q + 1) * kr)));
  };
  const t0 = performance.now();
  let feeds: Feed[] = slots.map((slot, i) => ({ slot, ids: prompts[i] }));
  await neighboursFor(feeds);
  let logits = dec.forward(feeds);
  const t1 = performance.now();
  let checksum = 0;
  for (let s = 1; s < NEW; s++) {
    feeds = slots.map((slot, i) => {
      const tok = argmax(logits.subarray(i * cfg.vocab, (i + 1) * cfg.vocab));
      checksum = (checksum * 31 + tok) % 1000003;
      return { slot, ids: [tok] };
    });
    await neighboursFor(feeds);
    logits = dec.forward(feeds);
  }
  const t2 = performance.now();
  const per = (x: number) => (1000 * x) / Math.max(1, retrievals);
  return {
    tokensPerS: (batch * (NEW - 1)) / ((t2 - t1) / 1000),
    prefillS: (t1 - t0) / 1000,
    retrievals,
    checksum,
    embedMs: per((t?.embedS ?? 0) - e0.embed),
    searchMs: per((t?.searchS ?? 0) - e0.search),
    encodeMs: per(dec.timing.encodeS - e0.encode),
  };
}

async function ours(spec: Record<string, unknown>, batch: number): Promise<Run & { threads: number }> {
  const engine = loadEngine();
  const cfg = resolveModelConfig(spec);
  const model = new Model(cfg, { engine, seed: 1234 });
  let best: (Run & { threads: number }) | null = null;
  for (const threads of [1, 2]) {
    engine.setThreads(threads);
    for (let r = 0; r < REPS; r++) {
      const run = await decode(cfg, model, batch);
      if (!best || run.tokensPerS > best.tokensPerS) best = { ...run, threads };
    }
  }
  return best!;
}

const SPECS: Record<string, Record<string, unknown>> = { gpt: GPT, gpt6: GPT6, retro: RETRO };

// child process: one measurement, one JSON line (its own peak RSS)
if (a.one) {
  const { name, batch } = JSON.parse(a.one) as { name: string; batch: number };
  let why = "";
  if (name === "retro") ({ retriever, why } = await openRetriever());
  const o = await ours(SPECS[name], batch);
  console.log(
    JSON.stringify({ ...o, live: Boolean(retriever), why, peakRssMiB: process.resourceUsage().maxRSS / 1024 }),
  );
  process.exit(0);
}

type Ours = Run & { threads: number; live: boolean; why: string; peakRssMiB: number };
function runOurs(name: string, batch: number): Ours {
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      fileURLToPath(import.meta.url),
      "--one",
      JSON.stringify({ name, batch }),
      "--db",
      a.db!,
      ...(a.quick ? ["--quick"] : []),
    ],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`bench child ${name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Ours;
}

type Peer = { decode_tokens_per_s: number; prefill_s: number; threads: number; peer: string; peak_rss_mb: number };
const peerOk = !a["no-peer"] && peerAvailable("torch", "torch_generate.py");
/** the peer with this machine's OpenBLAS variables and with both unset: the faster (both printed) */
const peer = (spec: Record<string, unknown>, mode: string, batch: number): Peer | null => {
  if (!peerOk) return null;
  const both = runPeerBothEnvs<Peer>(
    "torch_generate.py",
    [JSON.stringify({ ...spec, mode, batch, prompt: PROMPT, new: NEW, reps: REPS })],
    (r) => r.decode_tokens_per_s,
  );
  console.log(
    `peer ${spec.model} ${mode} batch ${batch}: OpenBLAS env set ${both.set.decode_tokens_per_s.toFixed(0)} tok/s, ` +
      `unset ${both.unset.decode_tokens_per_s.toFixed(0)} tok/s`,
  );
  return both.best;
};

const rows: Record<string, string | number>[] = [];
let failed = false;
const check = (what: string, ratio: number, target: number) => {
  if (ratio < target) {
    failed = true;
    console.log(`MISSED: ${what}: ${ratio.toFixed(2)}× < ${target}×`);
  }
};
const row = (model: string, batch: number, o: Ours, p: Peer | null, how: string) => ({
  model,
  batch,
  "ours tok/s": o.tokensPerS.toFixed(0),
  threads: o.threads,
  "prefill s": o.prefillS.toFixed(3),
  "ours RSS MiB": o.peakRssMiB.toFixed(0),
  "peer tok/s": p ? `${p.decode_tokens_per_s.toFixed(0)} (${how})` : "–",
  "peer RSS MiB": p ? p.peak_rss_mb.toFixed(0) : "–",
  ratio: p ? (o.tokensPerS / p.decode_tokens_per_s).toFixed(2) : "–",
});
console.log(
  `prompt ${PROMPT} tokens, ${NEW} new, greedy, random weights; ours: best of ${REPS} at 1 and 2 threads, each ` +
    `config in its own process`,
);
for (const batch of [1, 8]) {
  const o = runOurs("gpt", batch);
  const p = peer(GPT, "cache", batch);
  rows.push(row("gpt 4L", batch, o, p, "KV cache"));
  if (p) check(`GPT batch ${batch} vs PyTorch KV cache`, o.tokensPerS / p.decode_tokens_per_s, 2);
}
const g6 = runOurs("gpt6", 1);
rows.push(row("gpt 6L", 1, g6, null, ""));
const rt = runOurs("retro", 1);
const pr = peer(RETRO, "recompute", 1);
rows.push(row(`retro 6L (${rt.live ? "live retrieval" : "random neighbours"})`, 1, rt, pr, "recompute"));
console.log(table(rows));
if (!rt.live) console.log(`retro: random neighbour tokens, retrieval not timed: ${rt.why}`);
console.log(
  `retro: ${rt.retrievals} retrievals, each ` +
    `${rt.live ? `embed ${rt.embedMs.toFixed(2)} ms + search ${rt.searchMs.toFixed(2)} ms + ` : ""}encode ` +
    `${rt.encodeMs.toFixed(2)} ms; ${(rt.tokensPerS / g6.tokensPerS).toFixed(2)}× our 6-layer GPT`,
);
if (pr) check("Retro vs PyTorch recompute", rt.tokensPerS / pr.decode_tokens_per_s, 10);
check("Retro vs our 6-layer GPT", rt.tokensPerS / g6.tokensPerS, 0.5);
if (!peerOk) console.log("(no peer: ratios against PyTorch not measured)");
process.exit(failed ? 1 : 0);
