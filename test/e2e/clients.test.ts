/**
 * Real clients nobody here wrote, pointed at `retro serve` with an API key: the Vercel AI SDK
 * (`@ai-sdk/openai-compatible`: generateText, streamText with usage) and LangChain.js (`ChatOpenAI` with
 * configuration.baseURL, invoke and stream), and the package's LangChain retriever in process and over HTTP.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, streamText } from "ai";
import { ChatOpenAI } from "@langchain/openai";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { loadModel } from "../../src/model/checkpoint.ts";
import { RetroServer } from "../../src/serve/server.ts";
import { RetroRetriever } from "../../src/integrations/langchain.ts";
import { tmpDir, tinyRun } from "../helpers.ts";

const KEY = "sk-clients-test";
let server: RetroServer,
  db: Database,
  base = "";

before(async () => {
  process.env.RETRO_QUIET = "1";
  const { dbDir, run } = await tinyRun(tmpDir("retro-clients-"), { model: "gpt", d: 32, heads: 4, layers: 2, seq: 64 });
  db = new Database(dbDir);
  server = new RetroServer({
    model: loadModel(run).model,
    tokenizer: db.tokenizer,
    retriever: await Retriever.open(db),
    name: "tiny",
    port: 0,
    system: null,
    apiKey: KEY,
  });
  base = `http://127.0.0.1:${(await server.listen()).port}/v1`;
});

after(async () => {
  await server.close();
  db.close();
});

test("Vercel AI SDK: generateText and streamText (with usage) against the server", async () => {
  const provider = createOpenAICompatible({ name: "retro", baseURL: base, apiKey: KEY, includeUsage: true });
  const model = provider.chatModel("tiny");
  const one = await generateText({ model, prompt: "Who is Ahab?", maxOutputTokens: 6, temperature: 0 });
  assert.ok(one.usage.outputTokens! >= 1, JSON.stringify(one.usage));
  const s = streamText({ model, prompt: "Who is Ahab?", maxOutputTokens: 6, temperature: 0 });
  let streamed = "";
  for await (const t of s.textStream) streamed += t;
  assert.equal(streamed, one.text, "streamed and not streamed agree (greedy)");
  const usage = await s.usage;
  assert.equal(usage.outputTokens, one.usage.outputTokens);
  assert.ok(usage.inputTokens! > 0);
});

test("LangChain.js ChatOpenAI: invoke and stream against the server", async () => {
  const chat = new ChatOpenAI({
    model: "tiny",
    apiKey: KEY,
    configuration: { baseURL: base },
    maxTokens: 6,
    temperature: 0,
  });
  const r = await chat.invoke("Who is Ahab?");
  assert.equal(typeof r.content, "string");
  let streamed = "";
  for await (const c of await chat.stream("Who is Ahab?")) streamed += c.content as string;
  assert.equal(streamed, r.content);
  const wrong = new ChatOpenAI({ model: "tiny", apiKey: "nope", configuration: { baseURL: base }, maxRetries: 0 });
  await assert.rejects(wrong.invoke("x"), /401|API key/);
});

test("RetroRetriever: a LangChain retriever over the database, in process and over /v1/retrieve, the same chunks", async () => {
  const local = new RetroRetriever({ retriever: await Retriever.open(db), k: 3 });
  const remote = new RetroRetriever({ baseURL: base, apiKey: KEY, k: 3 });
  const a = await local.invoke("the white whale and the harpoon");
  const b = await remote.invoke("the white whale and the harpoon");
  assert.equal(a.length, 3);
  assert.deepEqual(
    b.map((d) => [d.pageContent, d.metadata.chunk]),
    a.map((d) => [d.pageContent, d.metadata.chunk]),
  );
  assert.equal(a[0].metadata.dataset, "moby");
  assert.throws(() => new RetroRetriever({}), /one of retriever/);
});
