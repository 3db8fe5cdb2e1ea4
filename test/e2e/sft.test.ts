/**
 * Step 4: the conversational format, the loss mask (only the last assistant turn and its end token carry a
 * gradient), accumulation weighted by counted tokens, the blend, prompt cutting, and `retro sft` end to end
 * (resume bit-identical, Retro tuned with the gate at 0 leaving encoder and CCA untouched), then `eval qa`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Model } from "../../src/model/model.ts";
import { resolveModelConfig } from "../../src/model/config.ts";
import { chatPrompt, qaPrompt, SYSTEM_PROMPT } from "../../src/prompt/format.ts";
import { readConversations, tokenizeExample } from "../../src/sft/data.ts";
import { encodePrompt } from "../../src/prompt/format.ts";
import { sftBatch, SftLoader } from "../../src/sft/loader.ts";
import { parseDataSpec } from "../../src/sft/config.ts";
import { gpt2Tokenizer } from "../../src/tokenizer/tokenizer.ts";
import { Rng } from "../../src/util/rng.ts";
import { RetroError } from "../../src/util/errors.ts";
import { cli, smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

const tok = gpt2Tokenizer();

test("format: the paper's System/User/Assistant turns; the QA template ends in 'The answer is'", () => {
  const c = chatPrompt(
    [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello." },
      { role: "user", content: "Name a colour." },
      { role: "assistant", content: "Blue." },
    ],
    SYSTEM_PROMPT,
  );
  assert.equal(
    c.parts.head + c.parts.middle + c.parts.tail,
    `System: ${SYSTEM_PROMPT}\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Name a colour.\n\nAssistant:`,
  );
  assert.equal(c.answer, " Blue.");
  const own = chatPrompt(
    [
      { role: "system", content: "Be brief." },
      { role: "user", content: "x" },
      { role: "assistant", content: "y" },
    ],
    SYSTEM_PROMPT,
  );
  assert.equal(own.parts.head, "System: Be brief.\n\n");
  const q = qaPrompt(
    "Who won?",
    [
      { title: "SB", text: "Denver won." },
      { title: "", text: "Second." },
    ],
    null,
  );
  assert.equal(
    q.head + q.middle + q.tail,
    "User: title: SB, source: Denver won.\n\ntitle: , source: Second.\n\nWho won? Answer the above question with a " +
      "short phrase.\n\nAssistant: The answer is",
  );
});

test("a prompt too long loses passage text from its end, never the question; counted", () => {
  const parts = qaPrompt("What is the capital of France?", [{ title: "a", text: "word ".repeat(200) }], null);
  const full = encodePrompt(tok, parts, 10_000);
  assert.equal(full.cut, 0);
  const fit = encodePrompt(tok, parts, 60);
  assert.equal(fit.ids.length, 60);
  assert.equal(fit.cut, full.ids.length - 60);
  const text = tok.decode(fit.ids);
  assert.ok(text.startsWith("User: title: a, source: word"), text);
  assert.ok(
    text.endsWith(
      "What is the capital of France? Answer the above question with a short phrase.\n\nAssistant: The answer is",
    ),
    text,
  );
});

test("loss mask: only the last assistant turn and its end token; targets outside it get exactly zero gradient", async () => {
  const conv = {
    where: "x",
    ...chatPrompt(
      [
        { role: "user", content: "Say one." },
        { role: "assistant", content: "One." },
        { role: "user", content: "Say two words." },
        { role: "assistant", content: "Two words." },
      ],
      "Be nice.",
    ),
  };
  const ex = tokenizeExample(tok, conv, 64);
  assert.equal(tok.decode(ex.ids.subarray(ex.answerStart)), " Two words."); // decode drops the end token
  assert.equal(ex.ids[ex.ids.length - 1], tok.eod);
  const cfg = resolveModelConfig({ model: "gpt", vocab: tok.vocabSize, d: 16, heads: 2, layers: 2, seq: 64 });
  const model = new Model(cfg, { seed: 3 });
  const run = async (perturb: boolean) => {
    const b = await sftBatch([ex, ex], { seq: 64, batch: 2, chunk: 1, eod: tok.eod });
    // the mask keeps exactly the positions whose target is an answer token or the end token
    const kept: number[] = [];
    for (let t = 0; t < b.n; t++) if (b.mask![t]) kept.push(b.targets[t]);
    assert.deepEqual(kept, Array.from(ex.ids.subarray(ex.answerStart)));
    if (perturb) {
      const rng = new Rng(9);
      for (let i = 0; i < b.targets.length; i++) if (!b.mask![i]) b.targets[i] = rng.int(tok.vocabSize);
    }
    model.zeroGrad();
    const r = model.forward(b);
    model.backward();
    return { loss: r.loss, tokens: r.tokens, grad: model.store.grad.slice() };
  };
  const a = await run(false),
    p = await run(true);
  assert.equal(a.tokens, 2 * (ex.ids.length - ex.answerStart));
  assert.equal(a.loss, p.loss);
  assert.ok(a.grad.some((g) => g !== 0));
  assert.deepEqual(p.grad, a.grad, "changing targets outside the mask must not change a single gradient bit");
});

test("accumulation weighted by counted tokens: two micro-batches give the gradient of one batch holding both", () => {
  const cfg = resolveModelConfig({ model: "gpt", vocab: 50, d: 16, heads: 2, layers: 2, seq: 8 });
  const model = new Model(cfg, { seed: 5 });
  const rng = new Rng(2);
  const mk = (keep: number) => {
    const ids = Int32Array.from({ length: 8 }, () => rng.int(50)),
      targets = Int32Array.from({ length: 8 }, () => rng.int(50));
    const mask = Float32Array.from({ length: 8 }, (_, i) => (i >= 8 - keep ? 1 : 0));
    return { B: 1, n: 8, ids, targets, mask };
  };
  const a = mk(1),
    b = mk(6); // 1 and 6 counted tokens
  model.zeroGrad();
  for (const x of [a, b]) {
    model.forward(x, { gradTokens: 7 });
    model.backward();
  }
  const acc = model.store.grad.slice();
  const both = {
    B: 2,
    n: 8,
    ids: Int32Array.from([...a.ids, ...b.ids]),
    targets: Int32Array.from([...a.targets, ...b.targets]),
    mask: Float32Array.from([...a.mask, ...b.mask]),
  };
  model.zeroGrad();
  model.forward(both);
  model.backward();
  const ref = model.store.grad;
  let diff = 0,
    scale = 0;
  for (let i = 0; i < ref.length; i++)
    (diff = Math.max(diff, Math.abs(acc[i] - ref[i]))), (scale = Math.max(scale, Math.abs(ref[i])));
  assert.ok(diff / scale < 1e-5, `relative difference ${diff / scale}`);
});

test("blend: draws follow the weights, each file's conversations shuffled per epoch; seek replays; bad files named", async () => {
  const dir = tmpDir("retro-sft-");
  const a = path.join(dir, "a.jsonl"),
    b = path.join(dir, "b.jsonl");
  const chat = (i: number, who: string) =>
    JSON.stringify({
      messages: [
        { role: "user", content: `${who} ${i}?` },
        { role: "assistant", content: `${who} answer ${i}` },
      ],
    });
  fs.writeFileSync(a, Array.from({ length: 10 }, (_, i) => chat(i, "a")).join("\n") + "\n");
  fs.writeFileSync(b, Array.from({ length: 10 }, (_, i) => chat(i, "b")).join("\n") + "\n");
  const exs = [a, b].map((f) => readConversations(f, null).map((c) => tokenizeExample(tok, c, 32)));
  const o = { seq: 32, batch: 4, chunk: 1, eod: tok.eod };
  const l = new SftLoader({ train: exs, valid: [], weights: [3, 1] }, o, 1);
  let fromA = 0;
  for (let i = 0; i < 10; i++) {
    const batch = await l.next();
    for (let s = 0; s < 4; s++)
      if (tok.decode(batch.ids.subarray(s * batch.n, s * batch.n + 3)).startsWith("User: a")) fromA++;
  }
  assert.equal(fromA, 30, "3 : 1 blend over 40 draws");
  const l2 = new SftLoader({ train: exs, valid: [], weights: [3, 1] }, o, 1);
  l2.seek(l.pos - 4);
  const l3 = new SftLoader({ train: exs, valid: [], weights: [3, 1] }, o, 1);
  for (let i = 0; i < 9; i++) await l3.next();
  assert.deepEqual((await l2.next()).ids, (await l3.next()).ids);
  assert.deepEqual(parseDataSpec("x/y.jsonl:0.5"), { path: "x/y.jsonl", weight: 0.5 });
  assert.deepEqual(parseDataSpec("x/y.jsonl"), { path: "x/y.jsonl", weight: 1 });
  const badFile = path.join(dir, "bad.jsonl");
  const bad = (content: string, re: RegExp) => {
    fs.writeFileSync(badFile, content);
    assert.throws(
      () => readConversations(badFile, null),
      (e: unknown) => e instanceof RetroError && re.test(e.message),
      re.source,
    );
  };
  bad(
    chat(0, "a") + "\n" + JSON.stringify({ messages: [{ role: "user", content: "x" }] }) + "\n",
    /bad\.jsonl:2: the last message must be the assistant's/,
  );
  bad(JSON.stringify({ messages: [{ role: "bot", content: "x" }] }), /bad\.jsonl:1: message 0: role must be/);
  bad(chat(0, "a") + "\nnull\n", /bad\.jsonl:2: expected a JSON object/);
  bad(
    JSON.stringify({
      messages: [
        { role: "user", content: "x" },
        { role: "assistant", content: 3 },
      ],
    }),
    /bad\.jsonl:1: message 1: "content" must be a string/,
  );
});

test("retro sft end to end: GPT and Retro (gate 0: encoder and CCA untouched), resume bit-identical, then eval qa", async () => {
  const { buildDatabase } = await import("../../src/db/build.ts");
  const { train } = await import("../../src/train/trainer.ts");
  const { sft } = await import("../../src/sft/sft.ts");
  const { readSafetensors } = await import("../../src/engine/safetensors.ts");
  const { resolveCheckpointDir } = await import("../../src/model/checkpoint.ts");
  const root = tmpDir("retro-sft-e2e-");
  const db = path.join(root, "db");
  await buildDatabase(db, smallConfig(writeTextCorpus(path.join(root, "corpus"), 30, 1200)));
  const model = { d: 32, heads: 4, layers: 2, seq: 64, k: 2, r: 32 };
  const quiet = { evalEvery: 1e9, saveEvery: 1e9, evalBatches: 0, threads: 1, batch: 2 };
  await train(path.join(root, "gpt"), { db, model: { model: "gpt", ...model }, steps: 3, ...quiet });
  await train(path.join(root, "retro"), {
    db,
    init: path.join(root, "gpt"),
    model: { model: "retro", cca_layers: [2] },
    steps: 2,
    ...quiet,
  });
  const data = path.join(root, "chat.jsonl");
  fs.writeFileSync(
    data,
    Array.from({ length: 30 }, (_, i) =>
      JSON.stringify({
        messages: [
          { role: "user", content: `What is the number after ${i}?` },
          { role: "assistant", content: `${i + 1}` },
        ],
      }),
    ).join("\n") + "\n",
  );
  const qa = path.join(root, "qa.json");
  fs.writeFileSync(
    qa,
    JSON.stringify(
      Array.from({ length: 12 }, (_, i) => ({
        id: `q${i}`,
        question: `What is the whale's name ${i}?`,
        answers: ["Moby Dick"],
        ctxs: [{ title: "moby", text: "The whale is Moby Dick." }],
      })),
    ),
  );
  const settings = {
    steps: 4,
    batch: 2,
    evalEvery: 2,
    saveEvery: 2,
    threads: 1,
    validFraction: 0.2,
    data: [
      { path: data, weight: 1 },
      { path: qa, weight: 0.5 },
    ],
  };
  // uninterrupted vs stopped after step 2 and resumed
  await sft(path.join(root, "sft-a"), { init: path.join(root, "retro"), ...settings });
  const r1 = await sft(path.join(root, "sft-b"), { init: path.join(root, "retro"), ...settings }, { stopAfter: 2 });
  assert.equal(r1.step, 2);
  await sft(path.join(root, "sft-b"), {}, { resume: true });
  const w = (run: string) => readSafetensors(path.join(resolveCheckpointDir(run), "model.safetensors"));
  const wa = w(path.join(root, "sft-a")),
    wb = w(path.join(root, "sft-b")),
    w0 = w(path.join(root, "retro"));
  const cfg = JSON.parse(fs.readFileSync(path.join(root, "sft-a", "config.json"), "utf8"));
  assert.equal(cfg.model.gate, 0, "Retro is tuned with the gate at 0 by default");
  assert.ok(cfg.sft.system.startsWith("This is a chat between a user"));
  let decoderMoved = false;
  const bytes = (f: typeof wa, name: string) => {
    const t = f.tensors.get(name)!;
    return f.data.subarray(t.begin, t.end);
  };
  for (const name of wa.tensors.keys()) {
    const a = bytes(wa, name),
      b = bytes(wb, name),
      o = bytes(w0, name);
    assert.ok(Buffer.compare(a, b) === 0, `${name}: resumed run differs`);
    const retrieval = name.startsWith("encoder.") || name.includes(".xattn.") || name.includes(".lnc.");
    if (retrieval) assert.ok(Buffer.compare(a, o) === 0, `${name}: gate 0 must leave the retrieval part untouched`);
    else if (Buffer.compare(a, o) !== 0) decoderMoved = true;
  }
  assert.ok(decoderMoved, "the decoder trains");
  // gate 1: the encoder and CCA train as well, on neighbours the Retriever finds for every chunk on the fly
  await sft(path.join(root, "sft-g1"), { init: path.join(root, "retro"), ...settings, steps: 1, model: { gate: 1 } });
  const wg = w(path.join(root, "sft-g1"));
  const enc = [...wg.tensors.keys()].filter((n) => n.startsWith("encoder.") || n.includes(".xattn."));
  assert.ok(
    enc.length > 0 && enc.some((n) => Buffer.compare(bytes(wg, n), bytes(w0, n)) !== 0),
    "gate 1 trains the retrieval part",
  );
  const metrics = fs
    .readFileSync(path.join(root, "sft-a", "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.ok(
    metrics.some((m) => m.kind === "eval" && Number.isFinite(m.loss)),
    "held-out conversations evaluated",
  );
  // a changed data file is refused on resume
  fs.appendFileSync(
    data,
    JSON.stringify({
      messages: [
        { role: "user", content: "x" },
        { role: "assistant", content: "y" },
      ],
    }) + "\n",
  );
  const changed = cli(["sft", "--out", path.join(root, "sft-b"), "--resume"]);
  assert.equal(changed.code, 6, changed.stderr);
  assert.match(changed.stderr, /chat\.jsonl changed since the run started/);
  await assert.rejects(
    sft(path.join(root, "sft-c"), { init: path.join(root, "retro"), ...settings, data: [] }),
    /at least one --data/,
  );

  // eval qa: every variant over the file's passages, predictions written, the table printed
  const out = path.join(root, "qa-out");
  const r = cli([
    "eval",
    "qa",
    "--ckpt",
    `retro=${path.join(root, "sft-a")}`,
    "--ckpt",
    path.join(root, "gpt"),
    "--data",
    qa,
    "--max-tokens",
    "4",
    "--batch",
    "5",
    "--no-system",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\| retro \| rag \| \d+\.\d \/ \d+\.\d \|/);
  assert.match(r.stdout, /\| retro \| encoder \|/);
  assert.match(r.stdout, /\| gpt \| none \|/);
  assert.doesNotMatch(r.stdout, /\| gpt \| encoder \|/);
  const preds = fs
    .readFileSync(path.join(out, "retro.qa.rag.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(preds.length, 12);
  assert.deepEqual(preds[0].passages, ["file"]);
  const results = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8"));
  assert.equal(results.length, 5);
  // the written predictions score to the same figures through eval score
  const jsonl = path.join(root, "p.jsonl");
  fs.writeFileSync(jsonl, preds.map((p) => JSON.stringify({ id: p.id, prediction: p.prediction })).join("\n"));
  const s = cli(["eval", "score", "--predictions", jsonl, "--gold", qa]);
  assert.equal(s.code, 0, s.stderr);
  const rag = results.find((x: { ckpt: string; variant: string }) => x.ckpt === "retro" && x.variant === "rag");
  assert.equal(JSON.parse(s.stdout).f1, rag.f1);
  // passages retrieved from the database (BM25 over its chunks) when the file has none
  const noctx = path.join(root, "noctx.jsonl");
  fs.writeFileSync(noctx, '{"id": "w", "question": "What is the whale called?", "answers": ["Moby Dick"]}\n');
  const rr = cli([
    "eval",
    "qa",
    "--ckpt",
    path.join(root, "sft-a"),
    "--data",
    noctx,
    "--variants",
    "rag",
    "--retriever",
    "bm25",
    "--top-k",
    "2",
    "--max-tokens",
    "4",
    "--json",
  ]);
  assert.equal(rr.code, 0, rr.stderr);
  const line = JSON.parse(rr.stdout.trim().split("\n").pop()!);
  assert.equal(line.passages, "retrieve");
  assert.equal(line.count, 1);

  // generate --chat: the message asked in the run's tuning template (its system prompt), passages in the user turn
  const ask = (extra: string[]) =>
    cli(["generate", "--ckpt", path.join(root, "sft-a"), "--chat", "--max-tokens", "3", ...extra]);
  const chat = ask(["--prompt", "What is the number after 3?", "--passages", "1"]);
  assert.equal(chat.code, 0, chat.stderr);
  assert.ok(chat.stdout.startsWith(`System: ${cfg.sft.system}\n\nUser: title: `), chat.stdout.slice(0, 120));
  assert.match(chat.stdout, /, source: [\s\S]*\n\nWhat is the number after 3\?\n\nAssistant:/);
  const bare = ask(["--prompt", "What is the number after 3?", "--passages", "0", "--no-system"]);
  assert.ok(bare.stdout.startsWith("User: What is the number after 3?\n\nAssistant:"), bare.stdout.slice(0, 80));
  const prompts = path.join(root, "ask.jsonl");
  fs.writeFileSync(prompts, '{"prompt": "What is the number after 7?"}\n');
  const batch = ask(["--prompts", prompts, "--passages", "0", "--no-system"]);
  assert.equal(batch.code, 0, batch.stderr);
  const got = JSON.parse(batch.stdout.trim());
  assert.equal(got.prompt, "What is the number after 7?");
  assert.equal(got.asked, "User: What is the number after 7?\n\nAssistant:");
});

test("bundled WordNet sets: synsets parsed from database documents; no held-out question in the instruction data", async () => {
  const { synsetsOfDoc, splitQuestions } = await import("../../src/sft/bundled.ts");
  const doc = [
    'abandon, forsake, desolate (verb): leave someone who needs or counts on you; leave in the lurch; "The mother deserted her children"',
    "not a synset line",
    "quit (verb): go",
    "dog, domestic dog (noun): a member of the genus Canis",
  ].join("\n");
  const s = synsetsOfDoc("verb.31.0", doc);
  assert.equal(s.length, 2, "lines without a definition of 8+ characters are skipped");
  assert.deepEqual(s[0], {
    key: "verb.31.0.0:abandon",
    lemmas: ["abandon", "forsake", "desolate"],
    pos: "verb",
    definition: "leave someone who needs or counts on you",
  });
  // a synthetic lexicon with shared lemmas and definitions across synsets
  const syn = Array.from({ length: 400 }, (_, i) => ({
    key: `k${i}`,
    lemmas: [`w${i % 150}`, `v${i}`],
    pos: "noun",
    definition: `meaning number ${i % 170}`,
  }));
  const { train, heldOut } = splitQuestions(syn, 7, 0.2);
  assert.ok(heldOut.length > 0 && train.length > 0);
  const trainText = train.map((q) => q.question + " " + q.answers.join(" ")).join("\n");
  for (const q of heldOut) {
    const asked =
      q.task === "word"
        ? q.question.slice("Which word means: ".length, -1)
        : q.question.match(/(?:synonym of|does) ([^\s?]+)/)![1];
    assert.ok(
      !train.some((t) => t.question === q.question),
      `held-out question in the instruction data: ${q.question}`,
    );
    if (q.task !== "word")
      assert.ok(!new RegExp(`(of|does) ${asked}[ ?]`).test(trainText), `${asked} asked about in training`);
  }
  assert.deepEqual(splitQuestions(syn, 7, 0.2).heldOut, heldOut, "seeded");
});
