/**
 * Step 5's metrics and file formats: EM/F1 with SQuAD's rules (hand-worked values), Megatron's F1 variant,
 * ROUGE against hand-worked n-gram and LCS counts, every QA format read into one shape, clear errors.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  corpusScore,
  exactMatch,
  f1Score,
  normalizeAnswer,
  rougeL,
  rougeN,
  scoreAnswer,
  scoreRouge,
} from "../../src/qa/metrics.ts";
import { readQaFile } from "../../src/prompt/qa-formats.ts";
import { scoreFiles } from "../../src/qa/score.ts";
import { RetroError } from "../../src/util/errors.ts";
import { cli, tmpDir } from "../helpers.ts";

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} vs ${b}`);

test("SQuAD normalisation: case, punctuation, articles, whitespace", () => {
  assert.equal(normalizeAnswer("  The  Big, Red-Cat! "), "big redcat");
  assert.equal(normalizeAnswer("an apple a day"), "apple day");
  assert.equal(normalizeAnswer("Theatre"), "theatre"); // "the" only as a word
  assert.equal(normalizeAnswer("A"), "");
});

test("exact match and F1 against hand-worked values", () => {
  assert.equal(exactMatch("the Big cat.", "big cat"), 1);
  assert.equal(exactMatch("big cats", "big cat"), 0);
  // pred {big, red, cat} vs gold {big, cat}: 2 shared, P 2/3, R 1 → F1 0.8
  close(f1Score("a big red cat", "the big cat"), 0.8, "f1");
  // repeated tokens count once each: pred {cat, cat} vs gold {cat}: 1 shared, P 1/2, R 1 → 2/3
  close(f1Score("cat cat", "cat"), 2 / 3, "f1 repeats");
  close(f1Score("dog", "cat"), 0, "f1 disjoint");
  // several gold answers: the best of each measure
  const s = scoreAnswer("Paris France", ["London", "Paris", "paris, france"]);
  assert.equal(s.em, 1);
  close(s.f1, 1, "best f1");
  const t = scoreAnswer("in Paris", ["Paris", "in Paris, France"]);
  assert.equal(t.em, 0);
  close(t.f1, 0.8, "max of 2/3 (pred {in, paris} vs {paris}) and 0.8 ({in, paris} vs {in, paris, france})");
  // empty prediction against a real answer; SQuAD 2.0 unanswerable (gold "")
  assert.deepEqual(scoreAnswer("", ["Paris"]), { em: 0, f1: 0 });
  assert.deepEqual(scoreAnswer("", [""]), { em: 1, f1: 1 });
  assert.deepEqual(scoreAnswer("Paris", [""]), { em: 0, f1: 0 });
  // Megatron's variant: first gold answer only, punctuation becomes a space
  close(
    scoreAnswer("state of the art", ["state-of-the-art", "state of the art"], "megatron").f1,
    1,
    "parlai punctuation",
  );
  close(scoreAnswer("London", ["Paris", "London"], "megatron").f1, 0, "first gold only");
  close(scoreAnswer("London", ["Paris", "London"], "squad").f1, 1, "squad takes the max");
});

test("corpus EM/F1 on the official scale, on a small set worked by hand with the official script's rules", () => {
  const pairs = [
    { prediction: "Denver Broncos", answers: ["Denver Broncos", "Broncos"] }, // EM 1, F1 1
    { prediction: "the Carolina Panthers team", answers: ["Carolina Panthers"] }, // EM 0, F1: P 2/3 R 1 → 0.8
    { prediction: "Santa Clara", answers: ["Levi's Stadium", "Santa Clara, California"] }, // EM 0, F1 max(0, P 1 R 2/3 → 0.8)
    { prediction: "gold", answers: ["golden anniversary"] }, // EM 0, F1 0
  ];
  const s = corpusScore(pairs);
  close(s.exact_match, 25, "EM = 100 · 1/4");
  close(s.f1, (100 * (1 + 0.8 + 0.8 + 0)) / 4, "F1 = 100 · 2.6/4 = 65");
  assert.equal(s.count, 4);
});

test("ROUGE-1/2/L against hand-worked counts, and their geometric mean", () => {
  // pred "the cat sat on the mat", ref "the cat is on the mat"
  // unigrams: 5 of 6 shared both ways → 5/6; bigrams: {the cat, on the, the mat} 3 of 5 → 0.6; LCS "the cat on the mat" 5 → 5/6
  close(rougeN("the cat sat on the mat", "The cat is on the mat.", 1), 5 / 6, "rouge-1");
  close(rougeN("the cat sat on the mat", "The cat is on the mat.", 2), 0.6, "rouge-2");
  close(rougeL("the cat sat on the mat", "The cat is on the mat."), 5 / 6, "rouge-L");
  // LCS order matters: "mat the on" vs "the cat on the mat": LCS 2 ("the mat" / "on ..."), P 2/3, R 2/5 → 0.5
  close(rougeL("mat the on", "the cat on the mat"), 0.5, "rouge-L order");
  assert.equal(rougeN("", "the cat", 1), 0);
  const r = scoreRouge("the cat sat on the mat", ["a dog", "the cat is on the mat"]);
  close(r.rouge2, 0.6, "best reference");
  const c = corpusScore([{ prediction: "the cat sat on the mat", answers: ["the cat is on the mat"] }], {
    rouge: true,
  });
  close(c.rouge_gm!, Math.cbrt((500 / 6) * 60 * (500 / 6)), "geometric mean");
});

test("QA files: SQuAD 1.1/2.0, KILT, Megatron QA JSON and plain JSONL read into one shape; bad files named", () => {
  const dir = tmpDir("retro-qa-");
  const squad = path.join(dir, "squad.json");
  fs.writeFileSync(
    squad,
    JSON.stringify({
      version: "v2.0",
      data: [
        {
          title: "Super_Bowl_50",
          paragraphs: [
            {
              context: "Denver won.",
              qas: [
                {
                  id: "q1",
                  question: "Who won?",
                  answers: [
                    { text: "Denver", answer_start: 0 },
                    { text: "Denver Broncos", answer_start: 0 },
                  ],
                },
                { id: "q2", question: "Who lost?", answers: [], is_impossible: true },
              ],
            },
          ],
        },
      ],
    }),
  );
  const s = readQaFile(squad);
  assert.equal(s.format, "squad");
  assert.deepEqual(s.items[0], {
    id: "q1",
    question: "Who won?",
    answers: ["Denver", "Denver Broncos"],
    passages: [{ title: "Super Bowl 50", text: "Denver won." }],
  });
  assert.deepEqual(s.items[1].answers, [""]);
  const kilt = path.join(dir, "nq.jsonl");
  fs.writeFileSync(
    kilt,
    JSON.stringify({
      id: "k1",
      input: "where is paris",
      output: [{ answer: "France" }, { provenance: [] }, { answer: "in France" }],
    }) + "\n",
  );
  assert.deepEqual(readQaFile(kilt), {
    format: "kilt",
    items: [{ id: "k1", question: "where is paris", answers: ["France", "in France"], passages: [] }],
  });
  const meg = path.join(dir, "meg.json");
  fs.writeFileSync(meg, JSON.stringify([{ question: "q?", answers: ["a"], ctxs: [{ title: "t", text: "x" }] }]));
  assert.deepEqual(readQaFile(meg).items[0], {
    id: "0",
    question: "q?",
    answers: ["a"],
    passages: [{ title: "t", text: "x" }],
  });
  const plain = path.join(dir, "plain.jsonl");
  fs.writeFileSync(plain, '{"id": 5, "question": "q?", "answer": "a", "context": "c"}\n\n');
  assert.deepEqual(readQaFile(plain).items[0], {
    id: "5",
    question: "q?",
    answers: ["a"],
    passages: [{ title: "", text: "c" }],
  });

  const bad = (content: string, re: RegExp) => {
    const f = path.join(dir, "bad.jsonl");
    fs.writeFileSync(f, content);
    assert.throws(
      () => readQaFile(f),
      (e: unknown) => e instanceof RetroError && e.code === 4 && re.test(e.message),
      re.source,
    );
  };
  bad('{"prompt": "x"}\n', /bad\.jsonl:1: unknown shape.*accepted formats: SQuAD/);
  bad('{"question": "a?", "answers": ["x"]}\n{"question": "b?"}\n', /bad\.jsonl:2: field "answers" is missing/);
  bad('{"question": "a?", "answers": []}\n', /bad\.jsonl:1: "answers" is empty/);
  bad('{"question": "a?", "answers": ["x"]}\n{oops\n', /bad\.jsonl:2: not JSON/);
  fs.writeFileSync(path.join(dir, "bad.json"), JSON.stringify([{ question: "q" }]));
  assert.throws(() => readQaFile(path.join(dir, "bad.json")), /bad\.json item 0: field "answers" is missing/);
});

test("eval score: JSONL or official predictions JSON against gold, one JSON line; mismatched ids counted", () => {
  const dir = tmpDir("retro-score-");
  const gold = path.join(dir, "gold.jsonl");
  fs.writeFileSync(
    gold,
    [
      '{"id": "a", "question": "?", "answers": ["Denver Broncos"]}',
      '{"id": "b", "question": "?", "answers": ["Carolina Panthers"]}',
    ].join("\n") + "\n",
  );
  const pj = path.join(dir, "pred.json");
  fs.writeFileSync(pj, JSON.stringify({ a: "the Denver Broncos", b: "Panthers" }));
  // a: EM 1, F1 1; b: EM 0, F1 P 1 R 1/2 → 2/3
  const s = scoreFiles(pj, gold);
  close(s.exact_match, 50, "em");
  close(s.f1, (100 * (1 + 2 / 3)) / 2, "f1");
  const pl = path.join(dir, "pred.jsonl");
  fs.writeFileSync(pl, '{"id": "a", "prediction": "the Denver Broncos"}\n{"id": "c", "prediction": "x"}\n');
  const r = cli(["eval", "score", "--predictions", pl, "--gold", gold]);
  assert.equal(r.code, 6, r.stderr);
  assert.match(r.stderr, /1 of 2 gold questions have no prediction, 1 of 2 predictions have no gold question/);
  const ok = cli(["eval", "score", "--predictions", pj, "--gold", gold, "--rouge"]);
  assert.equal(ok.code, 0, ok.stderr);
  const line = JSON.parse(ok.stdout) as Record<string, number>;
  close(line.exact_match, 50, "cli em");
  assert.equal(line.count, 2);
  assert.ok(line.rouge1 > 0 && line.rouge_gm !== undefined);
  const unknown = path.join(dir, "weird.json");
  fs.writeFileSync(unknown, JSON.stringify({ rows: [] }));
  const u = cli(["eval", "score", "--predictions", pj, "--gold", unknown]);
  assert.equal(u.code, 4);
  assert.match(u.stderr, /accepted formats/);
});
