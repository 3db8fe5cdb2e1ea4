/**
 * `retro demo` on a tiny configuration: all five steps run, the report holds every table, and a re-run reuses
 * the finished stages (same figures, no training).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { runDemo } from "../src/demo/pipeline.ts";
import { smallConfig, tmpDir, writeTextCorpus } from "./helpers.ts";

test("demo: database → GPT → GPT-/Retro-fitting → perplexity → instruction tuning → QA → report, re-run reuses", async () => {
  const root = tmpDir("retro-demo-");
  const wn = path.join(root, "wordnet");
  fs.mkdirSync(wn);
  const words = ["whale", "ship", "sea", "harpoon", "captain", "sailor", "ocean", "boat", "rope", "mast", "deck", "wave"];
  for (let f = 0; f < 12; f++) {
    const lines = Array.from({ length: 20 }, (_, i) => {
      const j = f * 20 + i;
      return `${words[j % 12]}${j}, ${words[(j + 5) % 12]}${j} (noun): a ${words[(j + 3) % 12]} that sails with the ${words[(j + 7) % 12]} number ${j}`;
    });
    fs.writeFileSync(path.join(wn, `part${f}.txt`), lines.join("\n"));
  }
  const base = smallConfig(writeTextCorpus(path.join(root, "moby"), 20, 1200));
  const dbConfig = { ...base, datasets: [...(base.datasets as object[]), { name: "wordnet", source: "text", path: wn, weight: 1 }] };
  const o = { out: path.join(root, "demo"), dbConfig, pretrainSteps: 3, fitSteps: 2, sftSteps: 2, qaQuestions: 4, model: { d: 32, heads: 4, layers: 2, seq: 64, r: 32 }, threads: 1 };
  const s = await runDemo(o);
  const report = fs.readFileSync(s.report, "utf8");
  for (const h of ["## Step 3 — held-out perplexity", "| Retro-fitting, random neighbours |", "## Steps 4–5", "| InstructRetro | top-2 in the prompt and the encoder (gate 1) |", "| InstructGPT | none (closed book) |", "## Generation with citations"]) {
    assert.ok(report.includes(h), `report lacks ${h}`);
  }
  for (const f of ["curves.svg", "overlap.svg", "qa.svg"]) assert.ok(fs.existsSync(path.join(o.out, "figures", f)), f);
  assert.equal(s.qa.length, 3 * 2 + 3 * 3, "InstructGPT: 3 sets × 2 variants; InstructRetro: 3 sets × 3 variants");
  for (const v of Object.values(s.ppl)) assert.ok(Number.isFinite(v) && v > 1);
  const mtime = fs.statSync(path.join(o.out, "sft-retro", "latest.json")).mtimeMs;
  const t0 = performance.now();
  const again = await runDemo(o);
  assert.deepEqual(again.ppl, s.ppl);
  assert.deepEqual(again.qa, s.qa);
  assert.equal(fs.statSync(path.join(o.out, "sft-retro", "latest.json")).mtimeMs, mtime, "finished runs are not trained again");
  assert.ok(performance.now() - t0 < 60_000);
});
