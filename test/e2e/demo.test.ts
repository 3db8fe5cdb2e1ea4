/**
 * `retro demo` on a tiny configuration: every stage runs (knowledge corpus, database, GPT, fits, perplexity with
 * fact tokens apart, instruction tuning, QA on B, the knowledge update with db add and a served answer), the
 * report holds every table, and a re-run reuses the finished stages (same figures, no training).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { runDemo } from "../../src/demo/pipeline.ts";
import { Database } from "../../src/db/database.ts";
import { systemPromptFor } from "../../src/model/checkpoint.ts";
import { SYSTEM_PROMPT } from "../../src/prompt/format.ts";
import { ASKED } from "../../src/data/people.ts";
import { exactMatch } from "../../src/qa/metrics.ts";
import { loadEngine } from "../../src/engine/native.ts";
import { tmpDir } from "../helpers.ts";

test(
  "demo: knowledge corpus → database → GPT → fits → perplexity → tuning → QA → db add → served answer → report; " +
    "a re-run reuses",
  async () => {
    const root = tmpDir("retro-demo-");
    const o = {
      out: path.join(root, "demo"),
      pretrainSteps: 3,
      fitSteps: 2,
      sftSteps: 2,
      qaQuestions: 6,
      wordnet: null,
      people: { a: 40, b: 12, c: 6, d: 20 },
      model: { d: 32, heads: 4, layers: 2, seq: 64, chunk: 16, r: 32 },
      threads: 1,
    };
    const s = await runDemo(o);
    const report = fs.readFileSync(s.report, "utf8");
    for (const h of [
      "## (a) Perplexity on B's held-out biographies",
      "| Retro-fitting, random neighbours |",
      "## (b) QA on B",
      "| InstructGPT | none (closed book) |",
      "## (c) Knowledge update",
      "| after | InstructRetro | top-2 passages in the prompt |",
    ]) {
      assert.ok(report.includes(h), `report lacks ${h}`);
    }
    for (const f of ["curves.svg", "perplexity.svg", "qa.svg", "update.svg"])
      assert.ok(fs.existsSync(path.join(o.out, "figures", f)), f);
    for (const v of Object.values(s.ppl)) assert.ok(Number.isFinite(v) && v > 1);
    for (const v of Object.values(s.factLoss)) assert.ok(Number.isFinite(v) && v > 0);
    assert.equal(
      s.qa.length,
      5,
      "people B: InstructGPT × (passages, closed book), InstructRetro × (passages, encoder, closed book)",
    );
    // the GPT trains on A alone; both fits on A and D (the text the GPT never saw), the database's weights
    const blendOf = (run: string) =>
      (JSON.parse(fs.readFileSync(path.join(o.out, run, "config.json"), "utf8")) as { blend: string }).blend;
    assert.deepEqual(["gpt", "gpt-fit", "retro-fit"].map(blendOf), ["people-d=0", "", ""]);
    // the update put C into the database, and the served answer cites it
    const db = new Database(path.join(o.out, "db"));
    assert.ok(db.manifest.datasets!.some((d) => d.name === "people-c"));
    db.close();
    // one served question per asked attribute, each citing the added biography first
    assert.equal(s.update.served.length, ASKED.length);
    for (const x of s.update.served) {
      assert.equal(x.citations[0]?.dataset, "people-c", `${x.question}: ${JSON.stringify(x.citations[0])}`);
      assert.equal(x.right, exactMatch(x.answer, x.expected) === 1);
    }
    // a tuned checkpoint is asked in the prompt it was tuned with (none here); an untuned one in the paper's
    assert.equal(systemPromptFor(path.join(o.out, "sft-retro"), undefined, SYSTEM_PROMPT), null);
    assert.equal(systemPromptFor(path.join(o.out, "gpt"), undefined, SYSTEM_PROMPT), SYSTEM_PROMPT);
    assert.equal(systemPromptFor(path.join(o.out, "sft-retro"), "Be brief.", SYSTEM_PROMPT), "Be brief.");
    assert.equal(systemPromptFor(path.join(o.out, "gpt"), false, SYSTEM_PROMPT), null);
    const mtime = fs.statSync(path.join(o.out, "sft-retro", "latest.json")).mtimeMs;
    // the runs multiply in bf16 where the engine can; a run made in fp32 (a demo folder from before) resumes in fp32
    const cfgFile = path.join(o.out, "gpt", "config.json");
    const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8")) as { precision: string };
    assert.equal(cfg.precision, loadEngine().bf16 ? "bf16" : "fp32");
    if (cfg.precision === "bf16") fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, precision: "fp32" }));
    // served answers from an older version (one object, not a list) are asked again
    const servedFile = path.join(o.out, "results", "served.json");
    fs.writeFileSync(servedFile, JSON.stringify(s.update.served[0]));
    const again = await runDemo(o);
    assert.deepEqual(again.ppl, s.ppl);
    assert.deepEqual(again.qa, s.qa);
    assert.deepEqual(again.update, s.update);
    assert.equal(
      fs.statSync(path.join(o.out, "sft-retro", "latest.json")).mtimeMs,
      mtime,
      "finished runs are not trained again",
    );
    // another corpus in the same folder would reuse stages made from this one: refused, nothing touched
    await assert.rejects(runDemo({ ...o, people: { ...o.people, a: 41 } }), /another corpus.*--fresh/s);
    assert.equal(fs.statSync(path.join(o.out, "sft-retro", "latest.json")).mtimeMs, mtime);
  },
);
