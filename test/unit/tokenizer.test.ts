import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { trainBpe, BpeTokenizer } from "../../src/tokenizer/bpe.ts";
import { gpt2Tokenizer, loadTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { stripBrownTags } from "../../src/data/sources.ts";
import { tmpDir } from "../helpers.ts";

const corpus = [
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.",
  "The whale! The white whale! Captain Ahab cried, and the crew of the Pequod answered.",
  "Fellow-Citizens of the Senate and House of Representatives: the state of the Union is strong.",
];

test("BPE: learned merges are applied in order; encode/decode round-trips any text, including unseen bytes", async () => {
  const m = await trainBpe(corpus, 320, 2);
  assert.equal(m.vocabSize, 256 + m.merges.length + 1);
  const tok = new BpeTokenizer(m);
  assert.equal(tok.eod, m.vocabSize - 1);
  for (const s of [...corpus, "naïve café — 東京 🐋", "", "  spaces  and\nnewlines\t"])
    assert.equal(tok.decode(tok.encode(s)), s);
  // frequent words become fewer tokens than their bytes
  assert.ok(tok.encode(" the whale").length < " the whale".length);
  // the first merge is the most frequent adjacent byte pair of the corpus (" t"/"th"/"he" family)
  const [a, b] = m.merges[0];
  assert.ok(a < 256 && b < 256);
  // EOD decodes to nothing
  assert.equal(tok.decode([...tok.encode("ab"), tok.eod]), "ab");
});

test("BPE training is deterministic and its id names its merges", async () => {
  const a = new BpeTokenizer(await trainBpe(corpus, 300));
  const b = new BpeTokenizer(await trainBpe(corpus, 300));
  const c = new BpeTokenizer(await trainBpe([...corpus].reverse().concat("zzzz zzzz zzzz"), 300));
  assert.equal(a.id, b.id);
  assert.notEqual(a.id, c.id);
  const f = path.join(tmpDir(), "tok.json");
  fs.writeFileSync(f, JSON.stringify(a.model));
  assert.equal(loadTokenizer(f).id, a.id);
  fs.writeFileSync(f, JSON.stringify({ kind: "wordpiece" }));
  assert.throws(() => loadTokenizer(f), /not a retro-ts BPE tokenizer/);
  assert.throws(() => loadTokenizer("/no/such/tokenizer.json"), /not found/);
});

test("GPT-2 BPE: known ids, end-of-document 50256, '<|endoftext|>' in text stays text", () => {
  const t = gpt2Tokenizer();
  assert.deepEqual(t.encode("Hello world"), [15496, 995]);
  assert.equal(t.eod, 50256);
  const ids = t.encode("a<|endoftext|>b");
  assert.ok(!ids.includes(50256));
  assert.equal(t.decode([...ids, 50256]), "a<|endoftext|>b");
});

test("Brown corpus: POS tags are stripped", () => {
  assert.equal(
    stripBrownTags("\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ./.\n"),
    'The Fulton County said " no evidence ".',
  );
});

test("BPE learns every pseudo-word of the twin corpus as one token (its documents then align with chunks)", async () => {
  // four-letter pseudo-words sharing syllables: merging " b"+"a" lowers the count of "a"+"k" without touching
  // it; the trainer must keep such pairs as candidates (re-pushed at their new count) to finish every word
  const { writeTwinCorpus } = await import("../../src/data/synthetic.ts");
  const files = writeTwinCorpus(tmpDir("bpe-words-"), { docs: 800, docTokens: 64, words: 200, seed: 1 });
  const texts = fs
    .readFileSync(files.docs, "utf8")
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { text: string }).text);
  const m = await trainBpe(texts, 256 + 4 * 200 + 16);
  const tok = new BpeTokenizer(m);
  const long = texts.filter((t) => tok.encode(t).length !== 63).length;
  assert.equal(long, 0, `${long} of ${texts.length} documents are not 63 tokens (doc + 62 words)`);
});
