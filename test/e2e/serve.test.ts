/**
 * `retro serve` driven by a client nobody here wrote — the `openai` npm package — pointed at the local server:
 * completions and chat, streaming and not, the citations extension, /v1/retrieve, errors, the bounded queue and
 * a client that disconnects mid-stream.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { loadModel } from "../../src/model/checkpoint.ts";
import { RetroServer } from "../../src/serve/server.ts";
import { tmpDir, tinyRun } from "../helpers.ts";

let server: RetroServer,
  db: Database,
  base = "",
  runDir = "",
  dbDir = "";
const prompt = "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse";

before(async () => {
  const { dbDir: dir, run } = await tinyRun(
    tmpDir("retro-serve-"),
    { model: "retro", d: 32, heads: 4, layers: 2, seq: 64, k: 2, r: 32, cca_layers: [2] },
    { evalBatches: 1 },
  );
  db = new Database(dir);
  runDir = run;
  dbDir = dir;
  const { model } = loadModel(run);
  server = new RetroServer({
    model,
    tokenizer: db.tokenizer,
    retriever: await Retriever.open(db),
    name: "tiny-retro",
    port: 0,
    maxQueue: 1,
    maxBatch: 1,
    system: null,
    updates: { dbDir: dir, reopen: async () => Retriever.open(new Database(dir)) },
  });
  const addr = await server.listen();
  base = `http://127.0.0.1:${addr.port}/v1`;
});

after(async () => {
  await server.close();
  db.close();
});

const client = () => new OpenAI({ baseURL: base, apiKey: "unused", maxRetries: 0 });

test("openai client: completions, streamed and not, agree; citations ride along; usage counted", async () => {
  const c = client();
  const r = await c.completions.create({ model: "tiny-retro", prompt, max_tokens: 20, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices.length, 1);
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.ok(
    r.usage!.prompt_tokens > 16 &&
      r.usage!.completion_tokens >= 1 &&
      r.usage!.total_tokens === r.usage!.prompt_tokens + r.usage!.completion_tokens,
  );
  const retrieval = (
    r as unknown as {
      retrieval: {
        chunk: number;
        neighbours: { chunk: number; dataset: string; document: number; text: string; score: number }[];
      }[];
    }
  ).retrieval;
  assert.ok(retrieval.length >= 1, "the prompt completes at least one chunk");
  assert.equal(retrieval[0].neighbours.length, 2);
  assert.equal(retrieval[0].neighbours[0].dataset, "moby");
  assert.ok(retrieval[0].neighbours[0].text.length > 0);
  let streamed = "",
    finish: string | null = null,
    chunks = 0;
  const s = await c.completions.create({ model: "tiny-retro", prompt, max_tokens: 20, temperature: 0, stream: true });
  for await (const ch of s) {
    chunks++;
    streamed += ch.choices[0].text;
    finish = ch.choices[0].finish_reason ?? finish;
  }
  assert.ok(chunks > 2);
  assert.equal(streamed, r.choices[0].text, "greedy: the stream spells the same text");
  assert.equal(finish, r.choices[0].finish_reason);
});

test("openai client: chat completions in the instruction format, streamed and not; models; retrieve", async () => {
  const c = client();
  const messages = [{ role: "user" as const, content: "Who is the captain of the ship?" }];
  const r = await c.chat.completions.create({ model: "tiny-retro", messages, max_tokens: 12 });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(typeof r.choices[0].message.content, "string");
  let text = "";
  for await (const ch of await c.chat.completions.create({
    model: "tiny-retro",
    messages,
    max_tokens: 12,
    stream: true,
  }))
    text += ch.choices[0]?.delta?.content ?? "";
  assert.equal(text, r.choices[0].message.content);
  const models = await c.models.list();
  assert.deepEqual(
    models.data.map((m) => m.id),
    ["tiny-retro"],
  );
  const rr = await fetch(`${base}/retrieve`, {
    method: "POST",
    body: JSON.stringify({ query: "the white whale", k: 3 }),
  });
  const body = (await rr.json()) as { data: { chunk: number }[] };
  assert.equal(rr.status, 200);
  assert.equal(body.data.length, 3);
  const page = await fetch(base.replace("/v1", "/"));
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type")!, /text\/html/);
  assert.match(await page.text(), /\/v1\/chat\/completions[\s\S]*retrieval/);
  const h = await fetch(base.replace("/v1", "/health"));
  assert.equal(((await h.json()) as { status: string }).status, "ok");
});

test("errors: bad fields are 400s naming the field, unknown model 404, full queue 503 with Retry-After", async () => {
  const c = client();
  await assert.rejects(
    c.completions.create({ model: "tiny-retro", prompt, max_tokens: 0 }),
    (e: { status: number; message: string }) => e.status === 400 && /max_tokens/.test(e.message),
  );
  await assert.rejects(
    c.completions.create({ model: "tiny-retro", prompt, top_p: 2 }),
    (e: { status: number }) => e.status === 400,
  );
  await assert.rejects(c.completions.create({ model: "other", prompt }), (e: { status: number }) => e.status === 404);
  await assert.rejects(
    c.chat.completions.create({ model: "tiny-retro", messages: [] }),
    (e: { status: number }) => e.status === 400,
  );
  const bad = await fetch(`${base}/completions`, { method: "POST", body: "{oops" });
  assert.equal(bad.status, 400);
  // one running + one waiting (maxQueue 1): a third concurrent request is refused, the others answered
  const long = {
    model: "tiny-retro",
    prompt,
    max_tokens: 300,
    ignore_eos: true,
  } as unknown as OpenAI.CompletionCreateParamsNonStreaming;
  const results = await Promise.allSettled([0, 1, 2].map(() => c.completions.create(long)));
  const refused = results.filter((x) => x.status === "rejected");
  assert.equal(refused.length, 1, JSON.stringify(results.map((x) => x.status)));
  assert.equal((refused[0] as PromiseRejectedResult).reason.status, 503);
  assert.equal((refused[0] as PromiseRejectedResult).reason.headers.get("retry-after"), "1");
});

test("a client that disconnects mid-stream frees the model at once", async () => {
  const before = server.stats.cancelled;
  const ctl = new AbortController();
  const res = await fetch(`${base}/completions`, {
    method: "POST",
    body: JSON.stringify({ prompt, max_tokens: 2000, stream: true, ignore_eos: true }),
    signal: ctl.signal,
  });
  const reader = res.body!.getReader();
  await reader.read();
  ctl.abort();
  const t0 = performance.now();
  const r = await client().completions.create({ model: "tiny-retro", prompt, max_tokens: 3 });
  assert.ok(r.choices[0].text !== undefined);
  assert.ok(performance.now() - t0 < 5000, "the next request did not wait for the abandoned 2000 tokens");
  assert.ok(server.stats.cancelled > before);
});

test(
  "knowledge update: a fact only in a document added through POST /v1/documents is retrieved and cited, no " +
    "restart",
  async () => {
    const fact = "The zorblax harmonica of Quillmere was invented by Ottoline Vask in the winter of 1911.";
    const top = async () => {
      const r = await fetch(`${base}/retrieve`, {
        method: "POST",
        body: JSON.stringify({ query: "zorblax harmonica Quillmere Ottoline Vask", k: 1 }),
      });
      return ((await r.json()) as { data: { dataset: string; text: string }[] }).data[0];
    };
    assert.notEqual((await top()).dataset, "news");
    const add = await fetch(`${base}/documents`, {
      method: "POST",
      body: JSON.stringify({ dataset: "news", documents: [{ text: `${fact} ${fact}` }] }),
    });
    assert.equal(add.status, 200, await add.clone().text());
    assert.equal(((await add.json()) as { documents: number }).documents, 1);
    const t = await top();
    assert.equal(t.dataset, "news");
    assert.match(t.text, /zorblax harmonica/);
    // a completion whose prompt is the fact reads the new chunk among its neighbours
    const r = await client().completions.create({ model: "tiny-retro", prompt: `${fact} ${fact}`, max_tokens: 2 });
    const cited = (r as unknown as { retrieval: { neighbours: { dataset: string }[] }[] }).retrieval.flatMap((x) =>
      x.neighbours.map((n) => n.dataset),
    );
    assert.ok(cited.includes("news"), JSON.stringify(cited));
    const bad = await fetch(`${base}/documents`, { method: "POST", body: JSON.stringify({ documents: [] }) });
    assert.equal(bad.status, 400);
  },
);

test("requests waiting with the same settings are decoded together, each answer as it would be alone", async () => {
  const { model } = loadModel(runDir);
  const d = new Database(dbDir);
  const s = new RetroServer({
    model,
    tokenizer: d.tokenizer,
    retriever: await Retriever.open(d),
    name: "batched",
    port: 0,
    maxQueue: 8,
    system: null,
    // a turn of the event loop after every token: this tiny model decodes 40 tokens in under the default 5 ms,
    // and the test needs a request to arrive mid-decode
    limits: { yieldIntervalMs: 0 },
  });
  const addr = await s.listen();
  const c = new OpenAI({ baseURL: `http://127.0.0.1:${addr.port}/v1`, apiKey: "unused", maxRetries: 0 });
  try {
    const prompts = ["The whale", "Call me Ishmael.", "The ship sailed", "A harpoon"];
    const alone: string[] = [];
    for (const p of prompts)
      alone.push(
        (
          await c.completions.create({
            model: "batched",
            prompt: p,
            max_tokens: 12,
            ignore_eos: true,
          } as unknown as OpenAI.CompletionCreateParamsNonStreaming)
        ).choices[0].text,
      );
    const b0 = s.stats.batches;
    // one long request holds the model while the four arrive; they wait, then run as one batch
    const hold = c.completions.create({
      model: "batched",
      prompt: "The sea",
      max_tokens: 200,
      ignore_eos: true,
    } as unknown as OpenAI.CompletionCreateParamsNonStreaming);
    await new Promise((r) => setTimeout(r, 30));
    const together = await Promise.all(
      prompts.map((p) =>
        c.completions.create({
          model: "batched",
          prompt: p,
          max_tokens: 12,
          ignore_eos: true,
        } as unknown as OpenAI.CompletionCreateParamsNonStreaming),
      ),
    );
    await hold;
    assert.equal(s.stats.batches - b0, 2, "the hold, then one batch of four");
    assert.deepEqual(
      together.map((r) => r.choices[0].text),
      alone,
    );
    // continuous batching: a request arriving while a batch with its settings decodes joins it at the next step
    const same = { model: "batched", max_tokens: 40, ignore_eos: true } as const;
    const lateAlone = (
      await c.completions.create({
        ...same,
        prompt: "A harpoon",
      } as unknown as OpenAI.CompletionCreateParamsNonStreaming)
    ).choices[0].text;
    const b1 = s.stats.batches,
      j1 = s.stats.joined;
    const first = await fetch(`http://127.0.0.1:${addr.port}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ ...same, prompt: "The sea", stream: true }),
    });
    const reader = first.body!.getReader();
    await reader.read(); // the first batch is decoding
    const late = await c.completions.create({
      ...same,
      prompt: "A harpoon",
    } as unknown as OpenAI.CompletionCreateParamsNonStreaming);
    while (!(await reader.read()).done);
    assert.equal(s.stats.joined - j1, 1, "the late request joined the running batch");
    assert.equal(s.stats.batches - b1, 1, "no second batch");
    assert.equal(late.choices[0].text, lateAlone, "a joined sequence decodes as it would alone");
    // no starving: a request with other settings waiting at the head of the queue stops the joining
    const j2 = s.stats.joined,
      done: string[] = [],
      slow = { model: "batched", max_tokens: 150, ignore_eos: true } as const;
    const runA = await fetch(`http://127.0.0.1:${addr.port}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ ...slow, prompt: "The sea", stream: true }),
    });
    const ra = runA.body!.getReader();
    await ra.read();
    const other = c.completions
      .create({ model: "batched", prompt: "A harpoon", max_tokens: 5 })
      .then(() => done.push("other settings"));
    await new Promise((r) => setTimeout(r, 20));
    const sameLater = c.completions
      .create({ ...slow, prompt: "The whale" } as unknown as OpenAI.CompletionCreateParamsNonStreaming)
      .then(() => done.push("same settings"));
    while (!(await ra.read()).done);
    await Promise.all([other, sameLater]);
    assert.equal(s.stats.joined, j2, "the later same-settings request did not jump the queue");
    assert.deepEqual(done, ["other settings", "same settings"]);
    // nor when a batch forms: A, B, C wait (A and C alike, B not); A's batch does not take C past B
    const order: string[] = [],
      held = await fetch(`http://127.0.0.1:${addr.port}/v1/completions`, {
        method: "POST",
        body: JSON.stringify({ ...slow, prompt: "The sea", stream: true }),
      });
    const rh = held.body!.getReader();
    await rh.read();
    const waiting: Promise<unknown>[] = [];
    for (const [name, max_tokens] of [
      ["A", 5],
      ["B", 6],
      ["C", 5],
    ] as const) {
      waiting.push(
        c.completions
          .create({
            model: "batched",
            prompt: "A harpoon",
            max_tokens,
            ignore_eos: true,
          } as unknown as OpenAI.CompletionCreateParamsNonStreaming)
          .then(() => order.push(name)),
      );
      await new Promise((r) => setTimeout(r, 20));
    }
    while (!(await rh.read()).done);
    await Promise.all(waiting);
    assert.deepEqual(order, ["A", "B", "C"], "served in arrival order");
    // crafted requests are 4xx and the server keeps serving: updates off, an oversize body, a huge max_tokens
    const u = `http://127.0.0.1:${addr.port}/v1`;
    assert.equal(
      (await fetch(`${u}/documents`, { method: "POST", body: JSON.stringify({ documents: [{ text: "x" }] }) })).status,
      403,
    );
    assert.equal(
      (
        await fetch(`${u}/completions`, {
          method: "POST",
          body: JSON.stringify({ prompt: "x".repeat(5 << 20) }),
        }).catch(() => ({ status: 413 }))
      ).status,
      413,
    );
    assert.equal(
      (await fetch(`${u}/completions`, { method: "POST", body: JSON.stringify({ prompt: "x", max_tokens: 1e9 }) }))
        .status,
      400,
    );
    assert.equal(
      (await fetch(`${u}/completions`, { method: "POST", body: JSON.stringify({ prompt: ["a", "b"] }) })).status,
      400,
    );
    assert.equal(
      (await c.completions.create({ model: "batched", prompt: "still here", max_tokens: 2 })).choices.length,
      1,
    );
  } finally {
    await s.close();
    d.close();
  }
});

test(
  "passage mode (a gate-0 model): a chat retrieves by the user's question, the passages go into the prompt in " +
    "the tuning template and are the only citations",
  async () => {
    const { model } = loadModel(runDir);
    model.gate = 0;
    const s = new RetroServer({
      model,
      tokenizer: db.tokenizer,
      retriever: await Retriever.open(new Database(dbDir)),
      name: "tiny-instruct",
      port: 0,
      system: null,
      passages: 2,
      updates: { dbDir, reopen: async () => Retriever.open(new Database(dbDir)) },
    });
    const addr = await s.listen();
    const c = new OpenAI({ baseURL: `http://127.0.0.1:${addr.port}/v1`, apiKey: "unused", maxRetries: 0 });
    try {
      const bio =
        "Vorlin Teskad was born in the harbour town of Quellmark in 1931 and repaired clocks for the Brandle company.";
      const add = await fetch(`http://127.0.0.1:${addr.port}/v1/documents`, {
        method: "POST",
        body: JSON.stringify({ dataset: "people", documents: [{ text: bio }] }),
      });
      assert.equal(add.status, 200, await add.clone().text());
      const question = "Where was Vorlin Teskad born?";
      const r = await c.chat.completions.create({
        model: "tiny-instruct",
        messages: [{ role: "user", content: question }],
        max_tokens: 4,
        temperature: 0,
      });
      const retrieval = (
        r as unknown as {
          retrieval: { chunk: number; query: string; neighbours: { dataset: string; text: string }[] }[];
        }
      ).retrieval;
      assert.equal(
        retrieval.length,
        1,
        "one retrieval: the prompt's passages (no chunk-by-chunk neighbours for a gate-0 model)",
      );
      assert.equal(retrieval[0].query, question);
      assert.equal(retrieval[0].neighbours.length, 2);
      assert.equal(retrieval[0].neighbours[0].dataset, "people");
      assert.ok(
        bio.startsWith(retrieval[0].neighbours[0].text),
        "the added document (cut to its share of this 64-position model)",
      );
      // the prompt holds both passages: far more tokens than the question in the chat template alone
      const plain = await c.chat.completions.create({
        model: "tiny-instruct",
        messages: [{ role: "user", content: question }],
        max_tokens: 4,
        temperature: 0,
        passages: 0,
      } as never);
      assert.equal((plain as unknown as { retrieval: unknown[] }).retrieval.length, 0);
      assert.ok(
        r.usage!.prompt_tokens > plain.usage!.prompt_tokens + 12,
        `${r.usage!.prompt_tokens} vs ${plain.usage!.prompt_tokens}`,
      );
      // streamed: the citations come first
      const st = await c.chat.completions.create({
        model: "tiny-instruct",
        messages: [{ role: "user", content: question }],
        max_tokens: 4,
        temperature: 0,
        stream: true,
      });
      let first: unknown = null;
      for await (const ch of st) first ??= (ch as unknown as { retrieval?: unknown[] }).retrieval ?? "none";
      assert.ok(Array.isArray(first) && first.length === 1, "the first chunk carries the passages");
      const bad = await fetch(`http://127.0.0.1:${addr.port}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ messages: [{ role: "user", content: "x" }], passages: -1 }),
      });
      assert.equal(bad.status, 400);
    } finally {
      await s.close();
    }
  },
);
