/**
 * Does a GPT read a biography in its context? For people of group B (never trained on), the answer to a question
 * in a held-out form is scored with B's database biography before the question and without it:
 *
 *   <biography>\n\nQ: <question>\nA: <answer>            vs            Q: <question>\nA: <answer>
 *
 * (the Q/A lines of the pretraining text's quiz). Reported per checkpoint: the mean loss of the answer tokens both
 * ways — a model that reads has a lower loss with the biography — and the greedy exact match with it. This is the
 * instrument behind the README's "what the 15-minute demo cannot reach": it shows when reading starts.
 *
 *   node --import tsx experiments/knowledge-reading.ts --dir runs/demo --ckpt gpt
 *     [--ckpt gpt/checkpoints/step-000500 …] [--n 192]
 *
 * --dir is a `retro demo` output folder (its data/people/people.json and db/); checkpoints are relative to it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { makePeopleCorpus, evalQuestions, type PeopleOptions } from "../src/data/people.ts";
import { Database } from "../src/db/database.ts";
import { loadModel } from "../src/model/checkpoint.ts";
import { Generator } from "../src/generate/generate.ts";
import { normalizeAnswer } from "../src/qa/metrics.ts";

const { values: a } = parseArgs({
  options: {
    dir: { type: "string", default: "runs/demo" },
    ckpt: { type: "string", multiple: true, default: ["gpt"] },
    n: { type: "string", default: "192" },
    threads: { type: "string", default: "2" },
    json: { type: "string" },
  },
});
const dir = path.resolve(a.dir!);
const opts = (
  JSON.parse(fs.readFileSync(path.join(dir, "data", "people", "people.json"), "utf8")) as { options: PeopleOptions }
).options;
const corpus = makePeopleCorpus(opts);
const db = new Database(path.join(dir, "db"));
const tok = db.tokenizer;
const bio = new Map(corpus.docs.b.map((b) => [b.person, b.text]));
const qs = evalQuestions(corpus, "B").slice(0, Number(a.n));
const rows: { ckpt: string; withBio: number; closed: number; em: number }[] = [];
for (const ck of a.ckpt!) {
  const { model } = loadModel(path.join(dir, ck));
  model.engine.setThreads(Number(a.threads));
  const n = model.config.seq,
    B = 8;
  const loss = (withBio: boolean): number => {
    let sum = 0,
      cnt = 0;
    for (let i = 0; i < qs.length; i += B) {
      const grp = qs.slice(i, i + B);
      const ids = new Int32Array(B * n).fill(tok.eod),
        targets = new Int32Array(B * n).fill(tok.eod),
        mask = new Float32Array(B * n);
      grp.forEach((q, s) => {
        const p = tok.encode(`${withBio ? bio.get(q.person) + "\n\n" : ""}Q: ${q.question}\nA:`),
          ans = tok.encode(` ${q.answers[0]}`);
        const all = [...p, ...ans].slice(-n - 1);
        for (let t = 0; t + 1 < all.length; t++) {
          ids[s * n + t] = all[t];
          targets[s * n + t] = all[t + 1];
          if (t + 1 >= all.length - ans.length) mask[s * n + t] = 1;
        }
      });
      const r = model.forward({ B, n, ids, targets, mask });
      sum += r.loss * r.tokens;
      cnt += r.tokens;
    }
    return sum / cnt;
  };
  const gen = new Generator(model, tok, null);
  let hits = 0;
  for (let i = 0; i < qs.length; i += B) {
    const grp = qs.slice(i, i + B);
    const res = await gen.generate(
      grp.map((q) => tok.encode(`${bio.get(q.person)}\n\nQ: ${q.question}\nA:`)),
      { maxTokens: 16, stop: ["\n"] },
    );
    res.forEach((r, j) => (hits += Number(normalizeAnswer(r.text) === normalizeAnswer(grp[j].answers[0]))));
  }
  const row = { ckpt: ck, withBio: loss(true), closed: loss(false), em: (100 * hits) / qs.length };
  rows.push(row);
  console.log(
    `${ck.padEnd(36)} answer loss with the biography ${row.withBio.toFixed(3)}, without ${row.closed.toFixed(3)} ` +
      `(reading gain ${(row.closed - row.withBio).toFixed(3)} nats); EM with it ${row.em.toFixed(1)}`,
  );
}
if (a.json) fs.writeFileSync(a.json, JSON.stringify({ dir: a.dir, questions: qs.length, rows }, null, 2) + "\n");
db.close();
