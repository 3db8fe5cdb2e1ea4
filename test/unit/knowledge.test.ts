/**
 * The knowledge corpus (src/data/people.ts) and what the demo builds on it: determinism, the attribute and
 * template counts, no name or fact of B or C in A's training text or instruction data, held-out question forms,
 * fact spans and the fact-token mask, per-dataset held-out fractions, and passages as document windows.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  ASKED,
  ATTRIBUTES,
  makePeopleCorpus,
  questionForms,
  sentenceForms,
  pairSentenceForms,
  tuningQuestions,
  evalQuestions,
  writePeopleCorpus,
  type PeopleOptions,
} from "../../src/data/people.ts";
import { buildDatabase } from "../../src/db/build.ts";
import { resolveConfig } from "../../src/db/config.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { knowledgeDbConfig, KNOWLEDGE } from "../../src/demo/knowledge.ts";
import { heldOutFactMask } from "../../src/demo/facts.ts";
import { buildKnowledgeSets, passagesFor } from "../../src/sft/knowledge.ts";
import { retrievePassages } from "../../src/prompt/passages.ts";
import { formatPassages } from "../../src/prompt/format.ts";
import { tmpDir } from "../helpers.ts";
import { Loader } from "../../src/train/loader.ts";
import { resolveTrainConfig } from "../../src/train/trainer.ts";
import { RetroError } from "../../src/util/errors.ts";

const SMALL: PeopleOptions = {
  seed: 5,
  a: 60,
  b: 20,
  c: 10,
  renderingsA: 3,
  renderingsB: 1,
  quiz: 3,
  paraphrase: 1,
  card: true,
  d: 30,
};

/** the corpus written to a temp folder and its knowledge database (tiny BPE, chunks of 16) */
async function smallKnowledgeDb(prefix: string) {
  const root = tmpDir(prefix);
  const { files, corpus } = writePeopleCorpus(path.join(root, "data"), SMALL);
  const dir = path.join(root, "db");
  await buildDatabase(
    dir,
    resolveConfig(knowledgeDbConfig(files, { seed: 5, chunk: 16, seq: 64, wordnet: null, vocabSize: 600 })),
  );
  return { root, files, corpus, db: new Database(dir) };
}

test(
  "people: deterministic from the seed; seven attributes, ≥ 8 sentence forms each, ≥ 10 tuning forms per asked " +
    "attribute and held-out forms apart",
  () => {
    const x = makePeopleCorpus(SMALL),
      y = makePeopleCorpus(SMALL),
      z = makePeopleCorpus({ ...SMALL, seed: 6 });
    assert.deepEqual(x, y);
    assert.notDeepEqual(
      x.people.map((p) => p.name),
      z.people.map((p) => p.name),
    );
    assert.ok(ATTRIBUTES.length >= 6);
    for (const a of ATTRIBUTES) assert.ok(sentenceForms(a).length >= 8, `${a}: ${sentenceForms(a).length} forms`);
    // two facts in one sentence: each pair form has both value slots once
    for (const pr of pairSentenceForms())
      for (const f of pr.forms) assert.ok(f.split("{A}").length === 2 && f.split("{B}").length === 2, f);
    // and such sentences occur: a biography with two fact spans in one sentence (no sentence end between them)
    const bios = [...x.docs.a, ...x.docs.b];
    const shared = bios.filter((b) =>
      b.facts.some((f) => b.facts.some((g) => g.start > f.end && !b.text.slice(f.end, g.start).includes(". "))),
    ).length;
    assert.ok(shared > 0.5 * bios.length && shared < bios.length, `${shared} of ${bios.length} biographies`);
    for (const a of ASKED.filter((t) => t !== "hobby") as Exclude<(typeof ASKED)[number], "hobby">[]) {
      const tune = questionForms(a, "tune"),
        held = questionForms(a, "eval");
      assert.ok(tune.length >= 10 && held.length >= 3);
      assert.equal(new Set([...tune, ...held]).size, tune.length + held.length, `${a}: a form twice`);
      for (const f of held) assert.ok(!tune.includes(f));
    }
    // names are unique, full and surname
    assert.equal(new Set(x.people.map((p) => p.name)).size, x.people.length);
    assert.equal(new Set(x.people.map((p) => p.last)).size, x.people.length);
    // each rendering's fact spans hold the person's values, and renderings of one person differ
    for (const bio of [...x.docs.a, ...x.docs.b, ...x.docs.bHeldOut, ...x.docs.c]) {
      const p = x.people.find((q) => q.id === bio.person)!;
      assert.equal(bio.facts.length, ATTRIBUTES.length);
      for (const f of bio.facts) assert.equal(bio.text.slice(f.start, f.end), p.attrs[f.attr]);
    }
    const b0 = x.docs.b[0],
      h0 = x.docs.bHeldOut.find((h) => h.person === b0.person)!;
    assert.notEqual(b0.text, h0.text);
    // D (the fitting text): two renderings of each D person, one per file; A, B and C do not depend on it
    const noD = makePeopleCorpus({ ...SMALL, d: 0 });
    assert.deepEqual(
      x.people.filter((p) => p.group !== "D"),
      noD.people,
    );
    assert.deepEqual(x.pretraining, noD.pretraining);
    assert.deepEqual({ ...x.docs, d: [], dDb: [] }, noD.docs);
    const ds = x.people.filter((p) => p.group === "D");
    assert.equal(ds.length, SMALL.d);
    assert.deepEqual(
      x.docs.d.map((b) => b.person),
      ds.map((p) => p.id),
    );
    for (const [i, bio] of x.docs.d.entries()) {
      const p = ds[i];
      for (const b of [bio, x.docs.dDb[i]]) {
        assert.equal(b.facts.length, ATTRIBUTES.length);
        for (const f of b.facts) assert.equal(b.text.slice(f.start, f.end), p.attrs[f.attr]);
      }
      assert.notEqual(bio.text, x.docs.dDb[i].text);
    }
  },
);

test(
  "people: no name or fact of B or C in A's pretraining text or instruction data; evaluation asks in held-out " +
    "forms only",
  async () => {
    const { root, files, corpus, db } = await smallKnowledgeDb("retro-people-");
    const retriever = await Retriever.open(db);
    const out = path.join(root, "sets");
    const counts = await buildKnowledgeSets(db, retriever, corpus, out, {
      seq: 1024,
      maxTokens: 16,
      system: null,
      exclude: [KNOWLEDGE.b, KNOWLEDGE.c, KNOWLEDGE.d, KNOWLEDGE.dDb],
    }); // passages whole: this tiny vocabulary makes long token runs
    const tuning =
      fs.readFileSync(path.join(out, "train-qa.json"), "utf8") +
      fs.readFileSync(path.join(out, "train-chat.jsonl"), "utf8");
    const pretraining = fs.readFileSync(files.a, "utf8");
    const unseen = corpus.people.filter((p) => p.group !== "A");
    assert.ok(unseen.length === SMALL.b + SMALL.c + SMALL.d!);
    for (const p of unseen) {
      for (const [what, text] of [
        ["pretraining text", pretraining],
        ["instruction data", tuning],
      ] as const) {
        assert.ok(!text.includes(p.first) && !text.includes(p.last), `${p.name} (${p.group}) appears in the ${what}`);
      }
    }
    // every tuning question is about A, in a tuning form; every B/C question is in a held-out form
    const forms = (which: "tune" | "eval") =>
      ASKED.filter((a) => a !== "hobby").flatMap((a) => questionForms(a as never, which));
    const fits = (q: string, which: "tune" | "eval") =>
      forms(which).some((f) =>
        new RegExp(
          "^" +
            f
              .replace(/[.?*+()[\]^$|\\]/g, "\\$&")
              .replace("\\{N\\}", ".+")
              .replace("{N}", ".+") +
            "$",
        ).test(q),
      );
    for (const q of tuningQuestions(corpus))
      assert.ok(q.person.startsWith("A") && fits(q.question, "tune"), q.question);
    for (const g of ["B", "C"] as const)
      for (const q of evalQuestions(corpus, g))
        assert.ok(fits(q.question, "eval") && !fits(q.question, "tune"), q.question);
    assert.ok(counts.recallB >= 0.9, `top-2 passages hold the answer for ${counts.recallB}`);
    assert.ok(counts.recallTrain >= 0.9, `the tuning passages hold the answer for ${counts.recallTrain}`);
    db.close();
  },
);

test("held-out fact mask: the marked tokens decode to exactly the attribute values; per-dataset held-out fractions", async () => {
  const { corpus, db } = await smallKnowledgeDb("retro-facts-");
  const info = Object.fromEntries(db.manifest.datasets!.map((d) => [d.name, d]));
  assert.equal(info[KNOWLEDGE.a].validDocs, 0, "validFraction 0: nothing of A held out");
  assert.equal(info[KNOWLEDGE.bHeldOut].trainDocs, 0, "validFraction 1: every document held out");
  assert.equal(info[KNOWLEDGE.bHeldOut].validDocs, SMALL.b);
  assert.equal(info[KNOWLEDGE.b].trainDocs, SMALL.b * SMALL.renderingsB);
  const fm = heldOutFactMask(db, KNOWLEDGE.bHeldOut, corpus.docs.bHeldOut);
  assert.equal(fm.skipped, 0);
  const v = db.valid;
  for (let d = 0; d < v.nDocs; d++) {
    const bio = corpus.docs.bHeldOut[v.docOrdinal(d)];
    const ids = v.read(v.docStart(d), v.docStart(d) + v.docLength(d));
    let run: number[] = [];
    const values: string[] = [];
    for (let t = 0; t <= ids.length; t++) {
      if (t < ids.length && fm.mask[v.docStart(d) + t]) run.push(ids[t]);
      else if (run.length) values.push(db.tokenizer.decode(run).trim()), (run = []);
    }
    const p = corpus.people.find((x) => x.id === bio.person)!;
    assert.deepEqual(
      values,
      bio.facts.map((f) => p.attrs[f.attr]),
    );
  }
  assert.throws(
    () =>
      resolveConfig({
        datasets: [
          { name: "x", source: "text", path: "x", weight: 1 },
          { name: "y", source: "text", path: "y", weight: 0, validFraction: 0.5 },
        ],
      }),
    /retrieval-only/,
  );
  assert.throws(
    () => resolveConfig({ datasets: [{ name: "x", source: "text", path: "x", validFraction: 1.5 }] }),
    /validFraction/,
  );
  db.close();
});

test(
  "passages: a retrieved chunk stands for its document (whole when it fits, else the window around the chunk), " +
    "one per document",
  async () => {
    const { corpus, db } = await smallKnowledgeDb("retro-passages-");
    const r = await Retriever.open(db);
    const p = corpus.people.find((x) => x.group === "B")!;
    const [whole] = await retrievePassages(r, [`Where was ${p.name} born?`], { topK: 2, maxTokens: 1000 });
    assert.equal(whole.length, 2);
    assert.notEqual(db.chunkDoc(whole[0].chunk), db.chunkDoc(whole[1].chunk), "one passage per document");
    const bio = corpus.docs.b.find((b) => b.person === p.id)!;
    assert.equal(whole[0].text, bio.text, "the best passage is the person's biography, whole");
    const [cut] = await retrievePassages(r, [`Where was ${p.name} born?`], { topK: 1, maxTokens: 60 });
    // the passage's share holds its "title: …, source: " header and the blank line too
    const header = db.tokenizer.encode(formatPassages([{ title: cut[0].title, text: "" }]) + "\n\n").length;
    const ids = db.tokenizer.encode(cut[0].text);
    assert.ok(
      ids.length <= 60 - header + 1 && ids.length >= 60 - header - 3,
      `a window of ${60 - header} tokens, got ${ids.length}`,
    );
    assert.ok(bio.text.includes(cut[0].text), "the window is a stretch of the document");
    assert.ok(cut[0].text.includes(db.chunkText(cut[0].chunk).trim()), "the window holds the chunk it was found by");
    // candidates to choose from (the tuning sets take 6) keep the size a passage has in a prompt of top-2: the
    // first two are exactly the top-2 passages, not shorter windows
    const qs = corpus.people.filter((x) => x.group === "A").map((x) => ({ question: `What is ${x.name}'s job?` }));
    const o = { topK: 2, seq: 128, maxTokens: 16, system: null };
    const two = await passagesFor(r, qs, o),
      six = await passagesFor(r, qs, { ...o, candidates: 6 });
    assert.ok(six.filter((ps) => ps.length > 2).length > qs.length / 2, "more candidates than passages");
    // (top-2 searches fewer chunks, so it may find fewer documents; those it finds are the candidates' first)
    assert.deepEqual(
      six.map((ps, i) => ps.slice(0, two[i].length).map((x) => x.text)),
      two.map((ps) => ps.map((x) => x.text)),
    );
    db.close();
  },
);

test("a run's blend: a retrieval-only dataset trained on, names checked against the database, nothing to train on refused", async () => {
  const { db } = await smallKnowledgeDb("retro-blend-");
  const names = db.manifest.datasets!.map((d) => d.name);
  const drawn = (blend: string) => {
    const l = new Loader(db, { split: "train", seq: 32, batch: 4, seed: 3, blend });
    for (let i = 0; i < 50; i++) l.next();
    return Object.fromEntries(names.map((n, i) => [n, l.drawnPerDataset[i]]));
  };
  // the database's weights: A and D half and half (D is a training dataset there)
  const base = drawn("");
  assert.ok(
    Math.abs(base[KNOWLEDGE.d] - 100) <= 1 && base[KNOWLEDGE.d] + base[KNOWLEDGE.a] === 200,
    JSON.stringify(base),
  );
  // D given weight 0 (the GPT's pretraining): A alone; A given 0: D alone
  assert.equal(drawn(`${KNOWLEDGE.d}=0`)[KNOWLEDGE.a], 200);
  assert.equal(drawn(` ${KNOWLEDGE.a}=0 `)[KNOWLEDGE.d], 200);
  // a retrieval-only dataset: a GPT may train on it, a Retro may not (its samples were never searched)
  assert.equal(drawn(`${KNOWLEDGE.b}=1,${KNOWLEDGE.a}=0,${KNOWLEDGE.d}=0`)[KNOWLEDGE.b], 200);
  assert.throws(
    () =>
      new Loader(db, {
        split: "train",
        seq: 32,
        batch: 4,
        seed: 3,
        blend: `${KNOWLEDGE.b}=1`,
        retrieval: { k: 2, r: 32 },
      }),
    /people-b is retrieval-only .*no neighbours/,
  );
  assert.throws(
    () => drawn("people-x=1"),
    (e: unknown) => e instanceof RetroError && /no dataset "people-x" \(it has people-a,/.test(e.message),
  );
  assert.throws(() => drawn("people-d"), /not name=weight/);
  assert.throws(() => drawn("people-d=-1"), /not name=weight/);
  assert.throws(() => drawn("people-d=1,people-d=2"), /named twice/);
  // the held-out dataset has no training samples: weight on it alone leaves nothing
  assert.throws(() => drawn(`${KNOWLEDGE.a}=0,${KNOWLEDGE.d}=0,${KNOWLEDGE.bHeldOut}=1`), /nothing to train on/);
  // a run's config: refused before any work, and written as given
  assert.throws(
    () => resolveTrainConfig({ blend: "nope=1", model: { d: 16, heads: 2, seq: 32 } }, db),
    /no dataset "nope"/,
  );
  assert.throws(
    () => resolveTrainConfig({ blend: `${KNOWLEDGE.b}=1`, model: { model: "retro", d: 16, heads: 2, seq: 32 } }, db),
    /people-b is retrieval-only .*no neighbours/,
  );
  const cfg = resolveTrainConfig({ blend: `${KNOWLEDGE.d}=0`, model: { d: 16, heads: 2, seq: 32 } }, db);
  assert.equal(cfg.blend, `${KNOWLEDGE.d}=0`);
  db.close();
});
