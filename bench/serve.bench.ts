/**
 * npm run bench:serve — `retro serve` under load, on localhost only, bounded in requests and time.
 * The server runs in its own process (`retro serve --port 0`); clients stream completions (so that the time to
 * the first token is seen) at 1, 8 and 64 concurrent clients, each sending `--requests` requests in turn.
 * Prints requests/s, generated tokens/s, p50/p99 latency, p50 time to first token, refused (503) and failed
 * requests, and the server's peak RSS. Exits 1 if any request is neither answered nor refused with a 503.
 * Flags: --ckpt RUN (default runs/demo/retro-fit)  --db DIR  --clients 1,8,64  --requests 4  --max-tokens 32
 *        --threads N (the server's engine threads)
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
}
async function request(i: number): Promise<One> {
  const t0 = performance.now();
  const res = await fetch(`${url}/completions`, {
    method: "POST",
    body: JSON.stringify({
      prompt: prompts[i % prompts.length],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      ignore_eos: true,
    }),
  });
  if (res.status === 503) {
    await res.text();
    return { ok: false, refused: true, latency: performance.now() - t0, ttft: NaN, tokens: 0 };
  }
  if (res.status !== 200) return { ok: false, refused: false, latency: performance.now() - t0, ttft: NaN, tokens: 0 };
  let ttft = NaN,
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
      if (j.choices[0].text && Number.isNaN(ttft)) ttft = performance.now() - t0;
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  return { ok: true, refused: false, latency: performance.now() - t0, ttft, tokens };
}

const q = (xs: number[], p: number) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
};
const rows: Record<string, string | number>[] = [];
let lost = 0;
try {
  await request(0); // warm-up (model pages, first retrieval)
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
} finally {
  child.kill("SIGINT");
}
console.log("\n" + table(rows));
console.log(
  `(${a.ckpt}; ${maxTokens} new tokens per request, greedy, streamed; each client sends ${perClient} requests in ` +
    `turn; requests with the same settings decoded in batches of up to 8 (a request arriving mid-decode joins the ` +
    `running batch), queue bound ${a["max-queue"]})`,
);
if (lost) {
  console.error(`bench:serve: ${lost} requests were neither answered nor refused with 503`);
  process.exit(1);
}
