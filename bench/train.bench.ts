/**
 * Training-step speed of the engine against PyTorch (Debian's python3-torch via ../shared/peers/torch_retro_step.py)
 * on the reference configs, in the same run: tokens/s, achieved GFLOP/s, % of the machine's measured sgemm peak,
 * peak RSS, and the Retro-vs-GPT FLOP and time ratios. Each measurement runs in its own process (clean RSS). The peer
 * runs with this machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE and with both unset (both shown; ratios against the
 * faster).
 *
 *   npm run bench:train                      # both builds, fp32, with the peer when installed
 *   npm run bench:train -- --quick           # fewer steps, no peer
 *   npm run bench:train -- --only gpt        # one config: gpt | gpt6 | retro
 *   npm run bench:train -- --no-bf16         # fp32 rows only
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadEngine, type EngineKind, type Precision } from "../src/engine/native.ts";
import { resolveModelConfig } from "../src/model/config.ts";
import { Model, type Batch } from "../src/model/model.ts";
import { AdamW } from "../src/model/optim.ts";
import { Rng } from "../src/util/rng.ts";
import { peerAvailable, runPeerBothEnvs, table } from "./common.ts";

const CONFIGS: Record<string, Record<string, unknown>> = {
  gpt: { model: "gpt", vocab: 8192, d: 256, heads: 4, layers: 4, seq: 256 },
  gpt6: { model: "gpt", vocab: 8192, d: 256, heads: 4, layers: 6, seq: 256 },
  retro: { model: "retro", vocab: 8192, d: 256, heads: 4, layers: 6, seq: 256, k: 2, r: 128, chunk: 64 },
};
const BATCH = 8;

interface One {
  name: string;
  engine: string;
  precision: Precision;
  backend: string;
  threads: number;
  tokensPerS: number;
  stepS: number;
  gflops: number;
  flops: number;
  peakRssMiB: number;
  losses: number[];
}

function runOne(name: string, kind: EngineKind, warmup: number, steps: number, precision: Precision): One {
  const engine = loadEngine(kind);
  engine.setPrecision(precision);
  const cfg = resolveModelConfig(CONFIGS[name]);
  const model = new Model(cfg, { engine, seed: 1234 });
  const opt = new AdamW(model);
  const rng = new Rng(1),
    n = cfg.seq,
    l = n / cfg.chunk;
  const r = (k: number) => Int32Array.from({ length: k }, () => rng.int(cfg.vocab));
  const batch: Batch = {
    B: BATCH,
    n,
    ids: r(BATCH * n),
    targets: r(BATCH * n),
    neighbours: cfg.model === "retro" ? r(BATCH * l * cfg.k * cfg.r) : undefined,
  };
  const times: number[] = [],
    losses: number[] = [];
  for (let s = 0; s < warmup + steps; s++) {
    const t0 = process.hrtime.bigint();
    model.zeroGrad();
    const { loss } = model.forward(batch);
    model.backward();
    opt.step(1e-4);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    losses.push(Math.round(loss * 1e4) / 1e4);
    if (s >= warmup) times.push(dt);
  }
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  const flops = model.flops(BATCH, n);
  return {
    name,
    engine: kind,
    precision,
    backend: engine.backend,
    threads: engine.getThreads(),
    tokensPerS: (BATCH * n) / med,
    stepS: med,
    gflops: flops / med / 1e9,
    flops,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    losses,
  };
}

/** best sgemm GFLOP/s of the build on the model's typical shapes */
function sgemmPeak(kind: EngineKind): number {
  const e = loadEngine(kind);
  let best = 0;
  for (const [M, N, K] of [
    [2048, 1024, 256],
    [2048, 8192, 256],
    [1024, 1024, 1024],
  ]) {
    const A = new Float32Array(M * K).fill(0.5),
      B = new Float32Array(N * K).fill(0.25),
      C = new Float32Array(M * N);
    e.gemm(0, 1, M, N, K, 1, A, K, B, K, 0, C, N);
    const reps = Math.max(2, Math.round(2e10 / (2 * M * N * K)));
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) e.gemm(0, 1, M, N, K, 1, A, K, B, K, 0, C, N);
    best = Math.max(best, (2 * M * N * K * reps) / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9);
  }
  return best;
}

function child(args: string[]): unknown {
  const r = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), ...args], {
    encoding: "utf8",
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`bench child ${args.join(" ")} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

const argv = process.argv.slice(2);
if (argv[0] === "--one") {
  console.log(
    JSON.stringify(
      runOne(argv[1], argv[2] as EngineKind, Number(argv[3]), Number(argv[4]), (argv[5] ?? "fp32") as Precision),
    ),
  );
} else if (argv[0] === "--peak") {
  console.log(JSON.stringify(sgemmPeak(argv[1] as EngineKind)));
} else {
  const quick = argv.includes("--quick");
  const only = argv.includes("--only") ? argv[argv.indexOf("--only") + 1].split(",") : ["gpt", "gpt6", "retro"];
  const kinds: EngineKind[] = argv.includes("--portable-only")
    ? ["portable"]
    : argv.includes("--blas-only")
      ? ["blas"]
      : ["blas", "portable"];
  const [warmup, steps] = quick ? [1, 3] : [3, 5];
  const withPeer = !quick && !argv.includes("--no-peer") && peerAvailable("torch", "torch_retro_step.py");
  const peaks = Object.fromEntries(kinds.map((k) => [k, child(["--peak", k]) as number]));
  const rows: Record<string, string | number>[] = [];
  const ours: Record<string, One> = {};
  for (const name of only) {
    type PeerRun = {
      tokens_per_s_median: number;
      by_threads: Record<string, number>;
      peak_rss_mb: number;
      threads: number;
    };
    let peer: PeerRun | null = null,
      peerEnv = "";
    if (withPeer) {
      // with this machine's OpenBLAS variables and with both unset; the ratios are against the faster
      const both = runPeerBothEnvs<PeerRun>(
        "torch_retro_step.py",
        [JSON.stringify({ ...CONFIGS[name], batch: BATCH, warmup, steps })],
        (r) => r.tokens_per_s_median,
      );
      peer = both.best;
      peerEnv =
        `; OpenBLAS env set ${both.set.tokens_per_s_median.toFixed(0)}, unset ` +
        `${both.unset.tokens_per_s_median.toFixed(0)}`;
    }
    const modes: [EngineKind, Precision][] = kinds.map((k) => [k, "fp32"]);
    // bf16 (our AVX512-BF16 kernel; Debian's OpenBLAS has no sbgemm): shown for the default build
    if (!argv.includes("--no-bf16") && loadEngine(kinds[kinds.length - 1]).bf16)
      modes.push([kinds[kinds.length - 1], "bf16"]);
    for (const [k, prec] of modes) {
      const o = child(["--one", name, k, String(warmup), String(steps), prec]) as One;
      if (prec === "fp32") ours[`${name}/${k}`] = o;
      rows.push({
        config: name,
        engine: `retro-ts ${o.backend} ${prec}`,
        threads: o.threads,
        "tokens/s": o.tokensPerS.toFixed(0),
        "step s": o.stepS.toFixed(3),
        "GFLOP/s": o.gflops.toFixed(1),
        "% sgemm peak": prec === "fp32" ? ((100 * o.gflops) / peaks[k]).toFixed(0) : "-",
        "peak RSS MiB": o.peakRssMiB.toFixed(0),
        "vs PyTorch": peer ? `${(o.tokensPerS / peer.tokens_per_s_median).toFixed(2)}x` : "-",
      });
    }
    if (peer) {
      const f = ours[`${name}/${kinds[0]}`].flops;
      const stepS = (BATCH * (CONFIGS[name].seq as number)) / peer.tokens_per_s_median;
      rows.push({
        config: name,
        engine: "pytorch",
        threads: `${peer.threads} (best of ${Object.entries(peer.by_threads)
          .map(([t, v]) => `${t}:${v}`)
          .join(" ")}${peerEnv})`,
        "tokens/s": peer.tokens_per_s_median.toFixed(0),
        "step s": stepS.toFixed(3),
        "GFLOP/s": (f / stepS / 1e9).toFixed(1),
        "% sgemm peak": "-",
        "peak RSS MiB": peer.peak_rss_mb.toFixed(0),
        "vs PyTorch": "1.00x",
      });
    }
  }
  console.log(
    `sgemm peak (this machine, this run): ` +
      `${kinds.map((k) => `${loadEngine(k).backend} ${peaks[k].toFixed(0)} GFLOP/s`).join(", ")}`,
  );
  console.log(table(rows));
  for (const k of kinds) {
    const g = ours[`gpt6/${k}`],
      r = ours[`retro/${k}`];
    if (g && r) {
      console.log(
        `${loadEngine(k).backend}: Retro vs 6-layer GPT: FLOP ratio ${(r.flops / g.flops).toFixed(2)}, time ratio ` +
          `${(r.stepS / g.stepS).toFixed(2)}, GFLOP/s ${r.gflops.toFixed(1)} vs ${g.gflops.toFixed(1)} ` +
          `(${((100 * r.gflops) / g.gflops).toFixed(0)} %)`,
      );
    }
  }
}
