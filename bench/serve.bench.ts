/**
 * npm run bench:serve — `retro serve` under load, on localhost only, bounded in requests and time.
 * The server runs in its own process (`retro serve --port 0`); clients stream completions (so that the time to
 * the first token is seen) at 1, 8 and 64 concurrent clients, each sending `--requests` requests in turn.
 * Prints requests/s, generated tokens/s, p50/p99 latency, p50 time to first token, refused (503) and failed
 * requests, and the server's peak RSS. Exits 1 if any request is neither answered nor refused with a 503.
 * Flags: --ckpt RUN (default runs/demo/retro-fit)  --db DIR  --clients 1,8,64  --requests 4  --max-tokens 32
 *        --threads N (the server's engine threads)  --repeats 9  --single-tokens 128  --min-ratio 0.9
 *
 * First, one client at the engine's speed: the same checkpoint decodes `--single-tokens` tokens in this process
 * (the Generator, no HTTP) and through the server (one streamed request), `--repeats` times each; the ratio of
 * the medians (min and max shown) must reach `--min-ratio` (exit 1 otherwise). Last, GET /metrics is scraped:
 * its request and token counters must equal the bench's own counts (exit 1 otherwise).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { table } from "./common.ts";

const { values: a } = parseArgs({
  options: {
    ckpt: { type: "string", default: "runs/demo/retro-fit" },
    db: { type: "string" },
    clients: { type: "string", default: "1,8,64" },
    requests: { type: "string", default: "4" },
    "max-tokens": { type: "string", default: "32" },
    "max-queue": { type: "string", default: "16" },
    threads: { type: "string" },
    repeats: { type: "string", default: "9" },
    "single-tokens": { type: "string", default: "128" },
    "min-ratio": { type: "string", default: "0.9" },
  },
});
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
if (!fs.existsSync(a.ckpt!)) {
  console.error(`bench:serve: no checkpoint at ${a.ckpt} (run "npm run demo" first, or pass --ckpt RUN)`);
  process.exit(2);
}
const args = [
  path.join(ROOT, "bin", "retro.js"),
  "serve",
  "--ckpt",
  a.ckpt!,
  "--port",
  "0",
  "--max-queue",
  a["max-queue"]!,
  "--log-format",
  "none",
  ...(a.db ? ["--db", a.db] : []),
  ...(a.threads ? ["--threads", a.threads] : []),
];
const child = spawn(process.execPath, args, {
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, RETRO_QUIET: "1" },
});
const url = await new Promise<string>((resolve, reject) => {
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    const line = out.split("\n").find((l) => l.startsWith("{"));
    if (line) resolve((JSON.parse(line) as { url: string }).url);
  });
  child.once("exit", (c) => reject(new Error(`retro serve exited with ${c}`)));
});
const peakRss = () => {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
};
const prompts = [
  "The whale",
  "Mr. Speaker, Members of Congress, the state of our Union",
  "Call me Ishmael. Some years ago",
  "A dictionary defines the word",
];
const maxTokens = Number(a["max-tokens"]),
  perClient = Number(a.requests);

interface One {
  ok: boolean;
  refused: boolean;
  latency: number;
  ttft: number;
  tokens: number;
  /** ms from the first streamed text to the last (the decode phase, prefill and HTTP set-up excluded) */
  decodeMs: number;
}
let served = { answered: 0, tokens: 0 }; // what the bench saw, to check /metrics against
async function request(i: number, want = maxTokens): Promise<One> {
  const t0 = performance.now();
  const res = await fetch(`${url}/completions`, {
    method: "POST",
    body: JSON.stringify({
      prompt: prompts[i % prompts.length],
      max_tokens: want,
      temperature: 0,
      stream: true,
      ignore_eos: true,
    }),
  });
  if (res.status === 503) {
    await res.text();
    return { ok: false, refused: true, latency: performance.now() - t0, ttft: NaN, tokens: 0, decodeMs: NaN };
  }
  if (res.status !== 200)
    return { ok: false, refused: false, latency: performance.now() - t0, ttft: NaN, tokens: 0, decodeMs: NaN };
  let ttft = NaN,
    lastText = NaN,
    tokens = 0,
    buf = "";
  const dec = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(part, { stream: true });
    let at: number;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const j = JSON.parse(ev.slice(6)) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
      if (j.choices[0].text) {
        if (Number.isNaN(ttft)) ttft = performance.now() - t0;
        lastText = performance.now() - t0;
      }
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  served = { answered: served.answered + 1, tokens: served.tokens + tokens };
  return { ok: true, refused: false, latency: performance.now() - t0, ttft, tokens, decodeMs: lastText - ttft };
}

const q = (xs: number[], p: number) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
};
/** counters of the server's /metrics: completions answered (200) and completion tokens */
async function scrape(): Promise<{ answered: number; tokens: number }> {
  const text = await (await fetch(`${url.replace(/\/v1$/, "")}/metrics`)).text();
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  return {
    answered: num(/retro_requests_total\{route="\/v1\/completions",status="200"\} (\d+)/),
    tokens: num(/retro_tokens_total\{kind="completion"\} (\d+)/),
  };
}

/** one client at the engine's speed: in-process decode vs one streamed request, same checkpoint and prompt */
async function single(): Promise<{ row: Record<string, string | number>; ratio: number }> {
  const { openCheckpoint } = await import("../src/model/checkpoint.ts");
  const { Retriever } = await import("../src/db/retriever.ts");
  const { Generator } = await import("../src/generate/generate.ts");
  const opened = openCheckpoint(a.ckpt!, { db: a.db });
  if (a.threads) opened.model.engine.setThreads(Number(a.threads));
  const retriever = opened.model.isRetro && opened.model.gate !== 0 ? await Retriever.open(opened.db) : null;
  const gen = new Generator(opened.model, opened.db.tokenizer, retriever);
  const n = Number(a["single-tokens"]),
    reps = Number(a.repeats);
  const opts = { maxTokens: n, temperature: 0, ignoreEod: true };
  await gen.generate([prompts[0]], opts); // warm-up
  // decode rate: tokens after the first over the time from the first text to the last (both sides alike);
  // end to end: all tokens over the whole request (prefill, and for the server HTTP and the prompt's parsing)
  const local: number[] = [],
    served: number[] = [],
    localE2e: number[] = [],
    servedE2e: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    let first = NaN,
      last = NaN,
      tokens = 0;
    for await (const ev of gen.stream([prompts[0]], opts)) {
      if (ev.type === "text") {
        if (Number.isNaN(first)) first = performance.now();
        last = performance.now();
      } else if (ev.type === "done") tokens = ev.result.tokens.length;
    }
    local.push((tokens - 1) / ((last - first) / 1000));
    localE2e.push(tokens / ((performance.now() - t0) / 1000));
    const one = await request(0, n);
    served.push((one.tokens - 1) / (one.decodeMs / 1000));
    servedE2e.push(one.tokens / (one.latency / 1000));
  }
  opened.db.close();
  const med = (xs: number[]) => q(xs, 0.5);
  const span = (xs: number[]) => `${Math.min(...xs).toFixed(0)}/${med(xs).toFixed(0)}/${Math.max(...xs).toFixed(0)}`;
  const ratio = med(served) / med(local);
  return {
    ratio,
    row: {
      tokens: n,
      repeats: reps,
      "in-process decode tok/s (min/med/max)": span(local),
      "one client decode tok/s": span(served),
      ratio: ratio.toFixed(3),
      "end to end: in-process": span(localE2e),
      "one client": span(servedE2e),
      "e2e ratio": (med(servedE2e) / med(localE2e)).toFixed(3),
    },
  };
}

const rows: Record<string, string | number>[] = [];
let lost = 0,
  failedChecks = 0;
try {
  await request(0); // warm-up (model pages, first retrieval)
  const m0 = await scrape();
  const firstTokens = served.tokens;
  const s1 = await single();
  console.log(table([s1.row]));
  if (!(s1.ratio >= Number(a["min-ratio"]))) {
    console.error(
      `bench:serve: one client streams at ${s1.ratio.toFixed(3)} of the in-process speed (< ${a["min-ratio"]})`,
    );
    failedChecks++;
  }
  for (const c of a.clients!.split(",").map(Number)) {
    const t0 = performance.now();
    const all = (
      await Promise.all(
        Array.from({ length: c }, async (_, k) => {
          const mine: One[] = [];
          for (let r = 0; r < perClient; r++) mine.push(await request(k * perClient + r));
          return mine;
        }),
      )
    ).flat();
    const wall = (performance.now() - t0) / 1000;
    const ok = all.filter((x) => x.ok),
      refused = all.filter((x) => x.refused).length,
      failed = all.length - ok.length - refused;
    lost += failed;
    rows.push({
      clients: c,
      requests: all.length,
      answered: ok.length,
      refused_503: refused,
      failed,
      "req/s": (ok.length / wall).toFixed(2),
      "tok/s": (ok.reduce((s, x) => s + x.tokens, 0) / wall).toFixed(0),
      p50_ms: q(
        ok.map((x) => x.latency),
        0.5,
      ).toFixed(0),
      p99_ms: q(
        ok.map((x) => x.latency),
        0.99,
      ).toFixed(0),
      ttft_p50_ms: q(
        ok.map((x) => x.ttft),
        0.5,
      ).toFixed(0),
      server_peak_rss_MiB: peakRss().toFixed(0),
    });
    console.log(table([rows[rows.length - 1]]));
  }
  // the server's own counters against what the bench received since the first scrape (a response is counted
  // when its connection's response closes: a moment after the client has read [DONE])
  await new Promise((r) => setTimeout(r, 200));
  const m1 = await scrape();
  const want = { answered: served.answered - 1, tokens: served.tokens - firstTokens };
  const got = { answered: m1.answered - m0.answered, tokens: m1.tokens - m0.tokens };
  console.log(
    `/metrics: ${got.answered} completions and ${got.tokens} tokens counted; the bench received ${want.answered} and ` +
      `${want.tokens}`,
  );
  if (got.answered !== want.answered || got.tokens !== want.tokens) {
    console.error("bench:serve: /metrics disagrees with the bench's counts");
    failedChecks++;
  }
} finally {
  child.kill("SIGINT");
}
console.log("\n" + table(rows));
console.log(
  `(${a.ckpt}; ${maxTokens} new tokens per request, greedy, streamed; each client sends ${perClient} requests in ` +
    `turn; requests with the same settings decoded in batches of up to 8 (a request arriving mid-decode joins the ` +
    `running batch), queue bound ${a["max-queue"]})`,
);
if (lost) console.error(`bench:serve: ${lost} requests were neither answered nor refused with 503`);
if (lost || failedChecks) process.exit(1);
