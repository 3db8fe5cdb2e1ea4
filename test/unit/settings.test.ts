/**
 * Settings declared once: a row added to a table at run time — no other file touched — is a CLI flag with its
 * range, is validated, reaches the run's config.json, is checked on resume, and a config.json written before the
 * key existed resumes with the row's legacy value. The tables' rules (types, ranges, defaults, docs) are checked
 * on hand-made rows.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { CommanderError } from "commander";
import { buildDatabase } from "../../src/db/build.ts";
import { TRAIN_SETTINGS } from "../../src/train/settings.ts";
import { MODEL_SETTINGS, resolveModelConfig } from "../../src/model/config.ts";
import { SAMPLING_SETTINGS, checkSampling, httpFieldOf } from "../../src/generate/sampling.ts";
import { buildProgram } from "../../src/cli/program.ts";
import {
  defaultsOf,
  defineSettings,
  legacyOf,
  resolveSettings,
  settingsMarkdown,
  type Setting,
} from "../../src/util/settings.ts";
import { RetroError } from "../../src/util/errors.ts";
import { smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

async function run(argv: string[]): Promise<void> {
  const p = buildProgram();
  p.configureOutput({ writeOut: () => {}, writeErr: () => {} });
  await p.parseAsync(["node", "retro", ...argv]);
}

test("a key added to the train table: a flag, validated, in config.json, checked on resume, legacy on old runs", async () => {
  process.env.RETRO_QUIET = "1";
  const table = TRAIN_SETTINGS as unknown as Record<string, Setting>;
  table.probeKnob = { kind: "int", min: 1, max: 9, default: 3, legacy: 2, help: "a row added by the test" };
  try {
    const help = buildProgram()
      .commands.find((c) => c.name() === "train")!
      .helpInformation();
    assert.match(help, /--probe-knob <n>\s+a row added by the test \(default 3\)/);
    const root = tmpDir("retro-settings-");
    const db = path.join(root, "db");
    await buildDatabase(db, smallConfig(writeTextCorpus(path.join(root, "corpus"), 12, 1500)));
    const base = [
      "train",
      "--db",
      db,
      "--d",
      "16",
      "--heads",
      "2",
      "--layers",
      "1",
      "--seq",
      "32",
      "--batch",
      "2",
      "--steps",
      "2",
      "--eval-every",
      "2",
      "--eval-batches",
      "1",
      "--save-every",
      "1",
    ];
    // validated from the row's range (commander reports the parser's error)
    await assert.rejects(
      run([...base, "--out", path.join(root, "bad"), "--probe-knob", "0"]),
      (e: unknown) => e instanceof RetroError && /--probe-knob must be an integer ≥ 1 and ≤ 9/.test(e.message),
    );
    // a --config file is read by the same row
    const cfgFile = path.join(root, "cfg.json");
    fs.writeFileSync(cfgFile, JSON.stringify({ probeKnob: 12 }));
    await assert.rejects(
      run([...base, "--out", path.join(root, "bad2"), "--config", cfgFile]),
      (e: unknown) => e instanceof RetroError && /probeKnob must be an integer ≥ 1 and ≤ 9, got 12/.test(e.message),
    );
    // written to config.json (given, and defaulted)
    const out = path.join(root, "run");
    await run([...base, "--out", out, "--probe-knob", "5", "--stop-after", "1"]);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(cfg.probeKnob, 5);
    const dflt = path.join(root, "run-default");
    await run([...base, "--out", dflt, "--stop-after", "1"]);
    assert.equal(
      (JSON.parse(fs.readFileSync(path.join(dflt, "config.json"), "utf8")) as Record<string, unknown>).probeKnob,
      3,
    );
    // checked on resume: another value is refused by name, the same one continues
    await assert.rejects(
      run([...base, "--out", out, "--resume", "--probe-knob", "6"]),
      (e: unknown) => e instanceof RetroError && /differs in probeKnob/.test(e.message),
    );
    await run([...base, "--out", out, "--resume", "--probe-knob", "5"]);
    // a run written before the key existed: its absence means the legacy value (2), not the default (3)
    const old = path.join(root, "run-old");
    await run([...base, "--out", old, "--stop-after", "1"]);
    const oc = JSON.parse(fs.readFileSync(path.join(old, "config.json"), "utf8")) as Record<string, unknown>;
    delete oc.probeKnob;
    fs.writeFileSync(path.join(old, "config.json"), JSON.stringify(oc));
    await assert.rejects(
      run([...base, "--out", old, "--resume", "--probe-knob", "3"]),
      (e: unknown) => e instanceof RetroError && /differs in probeKnob/.test(e.message),
    );
    await run([...base, "--out", old, "--resume", "--probe-knob", "2"]);
  } finally {
    delete table.probeKnob;
  }
});

test("tables: typed defaults, strict values, unknown keys named, legacy values, the docs table", () => {
  const t = defineSettings({
    n: { kind: "int", min: 1, default: 4, help: "n" },
    x: { kind: "num", above: 0, below: 1, default: 0.5, legacy: 0.25, help: "x | y" },
    on: { kind: "bool", default: false, help: "on" },
    mode: { kind: "choice", choices: ["a", "b"], default: "a", help: "mode" },
    ls: { kind: "intList", min: 1, default: [], help: "ls" },
  });
  assert.deepEqual(defaultsOf(t), { n: 4, x: 0.5, on: false, mode: "a", ls: [] });
  assert.equal(legacyOf(t).x, 0.25);
  const v = resolveSettings(t, { n: 7, mode: "b", ls: [2, 3] }, "probe");
  assert.deepEqual(v, { n: 7, x: 0.5, on: false, mode: "b", ls: [2, 3] });
  const bad = (input: Record<string, unknown>, re: RegExp) =>
    assert.throws(
      () => resolveSettings(t, input, "probe"),
      (e: RetroError) => e.code === 2 && re.test(e.message),
    );
  bad({ n: 0 }, /probe: n must be an integer ≥ 1, got 0/);
  bad({ n: 2.5 }, /n must be an integer/);
  bad({ x: 1 }, /x must be a number > 0 and < 1/);
  bad({ on: "yes" }, /on must be true or false/);
  bad({ mode: "c" }, /mode must be "a" or "b"/);
  bad({ ls: [0] }, /ls must be a list of integers ≥ 1/);
  bad({ nn: 1 }, /unknown probe key\(s\): nn \(known: n, x, on, mode, ls\)/);
  const md = settingsMarkdown(t).split("\n");
  assert.equal(md.length, 2 + 5);
  assert.equal(md[3], "| `x` | `--x` | number > 0 and < 1 | `0.5` | x \\| y |");
});

test("model and sampling tables: what the config, the CLI and the server accept", () => {
  // the model's defaults are the table's; vocab and chunk come from the database, not from flags
  const m = resolveModelConfig({});
  assert.equal(m.d, MODEL_SETTINGS.d.default);
  assert.equal(MODEL_SETTINGS.vocab.flag, false);
  const help = buildProgram()
    .commands.find((c) => c.name() === "train")!
    .helpInformation();
  assert.doesNotMatch(help, /--vocab/);
  assert.match(help, /--enc-layers <n>/);
  assert.match(help, /--no-retrieval-rope/);
  // one sampling table: library, CLI and HTTP fields name the same bounds
  assert.throws(() => checkSampling({ temperature: 3 }), /temperature must be a number ≥ 0 and ≤ 2, got 3/);
  assert.throws(() => checkSampling({ maxTokens: 5000 }, httpFieldOf), /max_tokens must be an integer ≥ 1 and ≤ 4096/);
  assert.deepEqual(Object.keys(SAMPLING_SETTINGS).map(httpFieldOf), [
    "max_tokens",
    "temperature",
    "top_k",
    "top_p",
    "seed",
  ]);
  const gen = buildProgram()
    .commands.find((c) => c.name() === "generate")!
    .helpInformation();
  for (const f of ["--max-tokens", "--temperature", "--top-k", "--top-p", "--seed"]) assert.ok(gen.includes(f), f);
});

test("commander errors of a generated flag stay usage errors", async () => {
  await assert.rejects(
    run(["generate", "--ckpt", "x", "--prompt", "a", "--temperature", "nope"]),
    (e: unknown) => (e instanceof RetroError && e.code === 2) || e instanceof CommanderError,
  );
});

test(
  "docs/configuration.md and docs/errors.md are what the tables give (regenerate: node --import tsx " +
    "scripts/configuration-docs.ts)",
  async () => {
    const { configurationMarkdown, CONFIG_DOC, errorsMarkdown, ERRORS_DOC } = await import(
      "../../scripts/configuration-docs.ts"
    );
    assert.equal(fs.readFileSync(ERRORS_DOC, "utf8"), errorsMarkdown());
    assert.equal(fs.readFileSync(CONFIG_DOC, "utf8"), configurationMarkdown());
  },
);

test("r follows the chunk length when absent (the paper's r = 2m), and stays what a config or flag says", async () => {
  assert.equal(resolveModelConfig({ model: "retro", chunk: 16, seq: 64 }).r, 32);
  assert.equal(resolveModelConfig({ model: "retro", chunk: 64 }).r, 128);
  assert.equal(resolveModelConfig({ model: "retro", chunk: 16, seq: 64, r: 48 }).r, 48);
  // a GPT's r sizes its position table (max(seq, r)), so a Retro-fit of it keeps the same table
  assert.equal(resolveModelConfig({ model: "gpt", chunk: 32 }).r, 64);
  const { settingsMarkdown } = await import("../../src/util/settings.ts");
  assert.match(settingsMarkdown(MODEL_SETTINGS), /\| `r` \| `--r` \| integer ≥ 1 \| 2 × chunk \|/);
  const help = buildProgram()
    .commands.find((c) => c.name() === "train")!
    .helpInformation();
  assert.match(
    help.replace(/\s+/g, " "),
    /--r <n> tokens per neighbour \(chunk \+ continuation\) \(default 2 × chunk\)/,
  );
});
