/**
 * GPT-2 small at full size (12 layers, d 768, 12 heads, 1,024 positions, 50,257 ids: 124M parameters) against
 * PyTorch (Debian's python3-torch via ../shared/peers) in the same run:
 *   - parity: the peer's random GPT-2 folder (hf_gpt2.py make) read as `hf:DIR` gives the peer's logits, and a
 *     random retro-ts GPT-2 exported with `exportHf` gives the peer our logits (both to 1e-5 of the largest logit);
 *   - training: tokens/s and peak RSS of one GPT step and one Retro-fit step (k 2, r 128, CCA in layers 6, 9, 12,
 *     the default placement for 12 layers), batch B × 1,024 tokens (torch_retro_step.py, the same shapes);
 *   - decoding: greedy tokens/s at batch 1 and 8 with the KV cache, prompt 64 (torch_generate.py, mode "cache"),
 *     the best of 3 runs on each side (the peer: of 3 at 1 and at 2 threads).
 * The peer runs twice: with this machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE and with both unset (they slow an
 * OpenBLAS-backed PyTorch); both figures are printed and every ratio is against the faster. Each measurement runs
 * in its own process (its own peak RSS). Targets: training ≥ 1.5×, decoding ≥ 2×, our peak RSS ≤ PyTorch's, logits
 * to 1e-5; exits 1 when one is missed.
 *
 *   npm run bench:gpt2 [-- --batch 1 --steps 2 --new 64 --peer-threads 2 --no-peer --only parity,train,decode]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { resolveModelConfig } from "../src/model/config.ts";
import { Model, type Batch } from "../src/model/model.ts";
import { AdamW } from "../src/model/optim.ts";
import { loadModel } from "../src/model/checkpoint.ts";
import { exportHf } from "../src/model/hf.ts";
import { relativeDifference, sequenceLogits } from "../src/model/logits.ts";
import { Decoder, type Feed } from "../src/generate/decoder.ts";
import { argmax } from "../src/generate/sampling.ts";
import { Rng } from "../src/util/rng.ts";
import { PEERS, PY, peerAvailable, runPeerBothEnvs, table } from "./common.ts";

const { values: a } = parseArgs({
  options: {
    batch: { type: "string", default: "1" },
    steps: { type: "string", default: "2" },
    new: { type: "string", default: "64" },
    "peer-threads": { type: "string" },
    "no-peer": { type: "boolean", default: false },
    only: { type: "string", default: "parity,train,decode" },
    one: { type: "string" },
  },
});
process.env.RETRO_QUIET ??= "1";
const BATCH = Number(a.batch),
  STEPS = Number(a.steps),
  NEW = Number(a.new),
  PROMPT = 64,
  WARMUP = 1,
  REPS = 3;
const GPT2 = { model: "gpt", vocab: 50257, d: 768, heads: 12, layers: 12, seq: 1024 };
const RETRO_FIT = { ...GPT2, model: "retro", chunk: 64, k: 2, r: 128 }; // CCA layers: the default for 12 layers
const SPECS: Record<string, Record<string, unknown>> = { gpt: GPT2, retro: RETRO_FIT };

interface Train {
  tokensPerS: number;
  stepS: number;
  peakRssMiB: number;
  ccaLayers: number[];
  params: number;
}
interface DecodeRun {
  tokensPerS: number;
  prefillS: number;
  peakRssMiB: number;
}

function train(name: string): Train {
  const cfg = resolveModelConfig(SPECS[name]);
  const model = new Model(cfg, { seed: 1234 });
  const opt = new AdamW(model);
  const rng = new Rng(1),
    n = cfg.seq;
  const r = (k: number) => Int32Array.from({ length: k }, () => rng.int(cfg.vocab));
  const batch: Batch = {
    B: BATCH,
    n,
    ids: r(BATCH * n),
    targets: r(BATCH * n),
    neighbours: cfg.model === "retro" ? r((BATCH * n * cfg.k * cfg.r) / cfg.chunk) : undefined,
  };
  const times: number[] = [];
  for (let s = 0; s < WARMUP + STEPS; s++) {
    const t0 = performance.now();
    model.zeroGrad();
    model.forward(batch);
    model.backward();
    opt.step(1e-4);
    if (s >= WARMUP) times.push((performance.now() - t0) / 1000);
  }
  times.sort((x, y) => x - y);
  const stepS = times[Math.floor(times.length / 2)];
  return {
    tokensPerS: (BATCH * n) / stepS,
    stepS,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    ccaLayers: cfg.model === "retro" ? cfg.cca_layers : [],
    params: model.store.size,
  };
}

/** the best of REPS greedy runs (this machine's speed varies by ±15 % from run to run) */
function decode(batch: number): DecodeRun {
  const model = new Model(resolveModelConfig(GPT2), { seed: 1234 });
  const dec = new Decoder(model);
  let best: DecodeRun | null = null;
  const slots = Array.from({ length: batch }, () => dec.newSlot());
  for (let rep = 0; rep < REPS; rep++) {
    const rng = new Rng(1234);
    for (const slot of slots) dec.reset(slot);
    const t0 = performance.now();
    let feeds: Feed[] = slots.map((slot) => ({ slot, ids: Array.from({ length: PROMPT }, () => rng.int(50257)) }));
    let logits = dec.forward(feeds);
    const t1 = performance.now();
    for (let s = 1; s < NEW; s++) {
      feeds = slots.map((slot, i) => ({ slot, ids: [argmax(logits.subarray(i * 50257, (i + 1) * 50257))] }));
      logits = dec.forward(feeds);
    }
    const t2 = performance.now();
    const run = {
      tokensPerS: (batch * (NEW - 1)) / ((t2 - t1) / 1000),
      prefillS: (t1 - t0) / 1000,
      peakRssMiB: process.resourceUsage().maxRSS / 1024,
    };
    if (!best || run.tokensPerS > best.tokensPerS) best = run;
  }
  return best!;
}

/** the peer's random GPT-2 imported, and ours exported: relative logit differences against the peer */
function parity(): { imported: number; exported: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "retro-gpt2-"));
  const ids = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 13) % 50257);
  const peerLogits = (folder: string): Float32Array => {
    const out = path.join(dir, "peer.f32");
    const r = spawnSync(PY, [path.join(PEERS, "hf_gpt2.py"), "logits", folder, "--ids", ids.join(","), "--out", out], {
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`hf_gpt2.py logits: ${r.stderr}`);
    return new Float32Array(fs.readFileSync(out).buffer.slice(0));
  };
  const ours = (m: Model): Float32Array => sequenceLogits(m, ids).logits;
  try {
    const made = path.join(dir, "peer-gpt2");
    const args = ["make", made, "--layers", "12", "--d", "768", "--heads", "12", "--ctx", "1024", "--seed", "7"];
    const r = spawnSync(PY, [path.join(PEERS, "hf_gpt2.py"), ...args], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`hf_gpt2.py make: ${r.stderr}`);
    const imported = relativeDifference(ours(loadModel(`hf:${made}`).model), peerLogits(made));
    fs.rmSync(made, { recursive: true });
    const m = new Model(resolveModelConfig(GPT2), { seed: 99 });
    const out = path.join(dir, "ours-gpt2");
    exportHf(m, "gpt2", out);
    const exported = relativeDifference(ours(m), peerLogits(out));
    return { imported, exported };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// child process: one measurement, one JSON line
if (a.one) {
  const job = JSON.parse(a.one) as { what: "train" | "decode" | "parity"; name?: string; batch?: number };
  const out = job.what === "train" ? train(job.name!) : job.what === "decode" ? decode(job.batch!) : parity();
  console.log(JSON.stringify(out));
  process.exit(0);
}

function child<T>(job: Record<string, unknown>): T {
  const args = ["--import", "tsx", fileURLToPath(import.meta.url), "--one", JSON.stringify(job)];
  for (const k of ["batch", "steps", "new"] as const) args.push(`--${k}`, String(a[k]));
  const r = spawnSync(process.execPath, args, { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`bench child ${JSON.stringify(job)} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as T;
}

type PeerTrain = {
  tokens_per_s_median: number;
  peak_rss_mb: number;
  threads: number;
  by_threads: Record<string, number>;
};
type PeerDecode = { decode_tokens_per_s: number; peak_rss_mb: number; threads: number };
const peerOk = !a["no-peer"] && peerAvailable("torch", "torch_retro_step.py") && peerAvailable("torch", "hf_gpt2.py");
const peerThreads = a["peer-threads"] ? Number(a["peer-threads"]) : null;
let failed = false;
const check = (what: string, ok: boolean, detail: string) => {
  console.log(`${ok ? "ok" : "MISSED"}: ${what}: ${detail}`);
  if (!ok) failed = true;
};
console.log(
  `GPT-2 small: 12 layers, d 768, 12 heads, 1,024 positions, 50,257 ids; training batch ${BATCH} × 1,024, ` +
    `median of ${STEPS} steps after ${WARMUP}; decoding prompt ${PROMPT}, ${NEW} new tokens`,
);
const only = new Set(a.only!.split(","));
if (peerOk && only.has("parity")) {
  const p = child<{ imported: number; exported: number }>({ what: "parity" });
  check("the peer's GPT-2 imported (hf:DIR)", p.imported < 1e-5, `logits within ${p.imported.toExponential(2)}`);
  check("a retro-ts GPT-2 exported (export hf)", p.exported < 1e-5, `logits within ${p.exported.toExponential(2)}`);
}
const rows: Record<string, string | number>[] = [];
for (const name of only.has("train") ? ["gpt", "retro"] : []) {
  const o = child<Train>({ what: "train", name });
  const label = name === "gpt" ? "GPT-2 124M" : `Retro-fit (k 2, r 128, CCA ${o.ccaLayers.join(",")})`;
  let ratio = "–",
    peerCol = "–",
    peerRss = "–";
  if (peerOk) {
    const cfg = { ...SPECS[name], cca_layers: o.ccaLayers.length ? o.ccaLayers : null, batch: BATCH };
    // the peer as this machine's environment runs it, and with the two OpenBLAS variables unset
    const p = runPeerBothEnvs<PeerTrain>(
      "torch_retro_step.py",
      [JSON.stringify({ ...cfg, warmup: WARMUP, steps: STEPS, threads: peerThreads })],
      (r) => r.tokens_per_s_median,
    );
    const best = p.best.tokens_per_s_median;
    const rss = Math.min(p.set.peak_rss_mb, p.unset.peak_rss_mb);
    peerCol = `${p.set.tokens_per_s_median.toFixed(1)} / ${p.unset.tokens_per_s_median.toFixed(1)}`;
    peerRss = rss.toFixed(0);
    ratio = `${(o.tokensPerS / best).toFixed(2)}x`;
    check(`${label} training vs PyTorch`, o.tokensPerS / best >= 1.5, `${ratio} (target ≥ 1.5×)`);
    check(`${label} peak RSS`, o.peakRssMiB <= rss, `${o.peakRssMiB.toFixed(0)} MiB vs PyTorch ${peerRss} MiB`);
  }
  rows.push({
    job: `train ${label}`,
    "ours tok/s": o.tokensPerS.toFixed(1),
    "ours RSS MiB": o.peakRssMiB.toFixed(0),
    "PyTorch tok/s (env set / unset)": peerCol,
    "PyTorch RSS MiB": peerRss,
    ratio,
  });
}
for (const batch of only.has("decode") ? [1, 8] : []) {
  const o = child<DecodeRun>({ what: "decode", batch });
  let ratio = "–",
    peerCol = "–",
    peerRss = "–";
  if (peerOk) {
    const cfg = { ...GPT2, mode: "cache", batch, prompt: PROMPT, new: NEW, reps: REPS, threads: peerThreads };
    const p = runPeerBothEnvs<PeerDecode>("torch_generate.py", [JSON.stringify(cfg)], (r) => r.decode_tokens_per_s);
    const best = p.best.decode_tokens_per_s;
    peerCol = `${p.set.decode_tokens_per_s.toFixed(1)} / ${p.unset.decode_tokens_per_s.toFixed(1)}`;
    peerRss = Math.min(p.set.peak_rss_mb, p.unset.peak_rss_mb).toFixed(0);
    ratio = `${(o.tokensPerS / best).toFixed(2)}x`;
    check(`decode batch ${batch} (KV cache) vs PyTorch`, o.tokensPerS / best >= 2, `${ratio} (target ≥ 2×)`);
    check(
      `decode batch ${batch} peak RSS`,
      o.peakRssMiB <= Number(peerRss),
      `${o.peakRssMiB.toFixed(0)} vs ${peerRss} MiB`,
    );
  }
  rows.push({
    job: `decode batch ${batch} (KV cache)`,
    "ours tok/s": o.tokensPerS.toFixed(1),
    "ours RSS MiB": o.peakRssMiB.toFixed(0),
    "PyTorch tok/s (env set / unset)": peerCol,
    "PyTorch RSS MiB": peerRss,
    ratio,
  });
}
console.log(table(rows));
if (!peerOk) console.log("(no peer: parity and ratios against PyTorch not measured)");
process.exit(failed ? 1 : 0);
