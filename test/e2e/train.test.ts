// Steps 2-3 on a small real database: the loader's order and neighbours, bit-exact resume after a SIGKILL,
// a frozen decoder, eval ppl against an independent computation, and the errors for runs that do not fit.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Loader } from "../../src/train/loader.ts";
import { evaluate } from "../../src/train/evaluate.ts";
import { lrAt, train, resolveTrainConfig } from "../../src/train/trainer.ts";
import { Model } from "../../src/model/model.ts";
import { readCheckpointConfig, resolveCheckpointDir, WEIGHTS_FILE } from "../../src/model/checkpoint.ts";
import { readSafetensors, tensorF32 } from "../../src/engine/safetensors.ts";
import { readMetrics } from "../../src/train/plot.ts";
import { RetroError } from "../../src/util/errors.ts";
import { cli, smallConfig, tmpDir, writeTextCorpus, ROOT } from "../helpers.ts";

let DB = "";
const MODEL = { d: 32, heads: 2, layers: 2, seq: 32, k: 2, r: 32 };
const quietEnv = { ...process.env, RETRO_QUIET: "1" };

before(async () => {
  const root = tmpDir("train-db-");
  const a = writeTextCorpus(path.join(root, "a"), 30, 3000);
  const b = path.join(root, "b");
  fs.mkdirSync(b);
  for (const f of fs.readdirSync(a).slice(20)) fs.renameSync(path.join(a, f), path.join(b, f));
  DB = path.join(root, "db");
  const cfg = smallConfig(a, { validFraction: 0.15 });
  cfg.datasets = [
    { name: "a", source: "text", path: a, weight: 3 },
    { name: "b", source: "text", path: b, weight: 1 },
  ];
  process.env.RETRO_QUIET = "1";
  await buildDatabase(DB, cfg);
});

test(
  "loader: GPT and Retro read the same tokens; seeded epochs; blend weights; neighbours as the database gives " +
    "them",
  () => {
    const db = new Database(DB);
    const gpt = new Loader(db, { split: "train", seq: 32, batch: 4, seed: 9 });
    const retro = new Loader(db, { split: "train", seq: 32, batch: 4, seed: 9, retrieval: { k: 2, r: 32 } });
    for (let i = 0; i < 5; i++) {
      const g = gpt.next(),
        r = retro.next();
      assert.deepEqual(g.ids, r.ids);
      assert.deepEqual(g.targets, r.targets);
      assert.equal(g.neighbours, undefined);
      // neighbours of item (sample, half): the database's [l=4, k, r] of that sample, rows of this half
      for (let b = 0; b < 4; b++) {
        const it = r.items[b],
          sample = Math.floor(it / 2),
          half = it % 2;
        const full = db.sampleRetrieved("train", sample, 2, 32);
        const mine = r.neighbours!.subarray(b * 2 * 2 * 32, (b + 1) * 2 * 2 * 32);
        assert.deepEqual(Array.from(mine), Array.from(full.subarray(half * 2 * 2 * 32, (half + 1) * 2 * 2 * 32)));
        // targets are the inputs shifted by one
        assert.deepEqual(
          Array.from(r.ids.subarray(b * 32 + 1, (b + 1) * 32)),
          Array.from(r.targets.subarray(b * 32, (b + 1) * 32 - 1)),
        );
      }
    }
    const other = new Loader(db, { split: "train", seq: 32, batch: 4, seed: 10 });
    assert.notDeepEqual(other.next().ids, new Loader(db, { split: "train", seq: 32, batch: 4, seed: 9 }).next().ids);
    // blend: draws follow the 3:1 weights; each dataset walks a permutation (no repeats within its epoch)
    const l = new Loader(db, { split: "train", seq: 32, batch: 1, seed: 1 });
    const seen = [new Set<number>(), new Set<number>()];
    const reader = db.split("train");
    const n = 200;
    for (let i = 0; i < n; i++) {
      const it = l.next().items[0];
      const ds = reader.docDataset(reader.docAt(l.start(it)));
      if (seen[ds].size < 50) assert.ok(!seen[ds].has(it), `item ${it} repeated within an epoch`);
      seen[ds].add(it);
    }
    const total = seen[0].size + seen[1].size;
    assert.ok(total > 0);
    const drawnA = l.drawnPerDataset;
    assert.ok(Math.abs(drawnA[0] / n - 0.75) < 0.01, `dataset a drew ${drawnA[0]} of ${n}`);
    // seek() replays to the same place
    const a1 = new Loader(db, { split: "train", seq: 32, batch: 3, seed: 4 });
    for (let i = 0; i < 7; i++) a1.next();
    const a2 = new Loader(db, { split: "train", seq: 32, batch: 3, seed: 4 });
    a2.seek(a1.pos);
    assert.deepEqual(a2.next().ids, a1.next().ids);
    db.close();
  },
);

test("cosine schedule: linear warmup, then cosine down to the minimum", () => {
  const c = { lr: 1e-3, minLr: 1e-4, warmup: 10, steps: 110 };
  assert.equal(lrAt(c, 5), 5e-4);
  assert.equal(lrAt(c, 10), 1e-3);
  assert.ok(Math.abs(lrAt(c, 60) - 5.5e-4) < 1e-12);
  assert.ok(Math.abs(lrAt(c, 110) - 1e-4) < 1e-12);
});

function runCli(args: string[]): Promise<{
  code: number | null;
  signal: NodeJS.Signals | null;
  proc: ReturnType<typeof spawn>;
}> & {
  proc: ReturnType<typeof spawn>;
} {
  const proc = spawn(process.execPath, [path.join(ROOT, "bin", "retro.js"), ...args], {
    env: quietEnv,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  proc.stderr!.on("data", (d) => (err += d));
  const p = new Promise<{ code: number | null; signal: NodeJS.Signals | null; proc: ReturnType<typeof spawn> }>((res) =>
    proc.on("exit", (code, signal) => {
      if (code && code !== 0) process.stderr.write(err);
      res({ code, signal, proc });
    }),
  ) as Promise<{ code: number | null; signal: NodeJS.Signals | null; proc: ReturnType<typeof spawn> }> & {
    proc: ReturnType<typeof spawn>;
  };
  p.proc = proc;
  return p;
}

test("a run killed with SIGKILL and resumed gives the same loss curve and bit-identical weights", async () => {
  const base = tmpDir("resume-");
  const args = (out: string) => [
    "train",
    "--db",
    DB,
    "--out",
    out,
    "--model",
    "retro",
    "--d",
    "32",
    "--heads",
    "2",
    "--layers",
    "2",
    "--seq",
    "32",
    "--r",
    "32",
    "--batch",
    "4",
    "--steps",
    "30",
    "--save-every",
    "1",
    "--eval-every",
    "10",
    "--eval-batches",
    "2",
    "--warmup",
    "3",
    "--lr",
    "3e-3",
  ];
  const clean = path.join(base, "clean"),
    killed = path.join(base, "killed");
  assert.equal((await runCli(args(clean))).code, 0);
  const run = runCli(args(killed));
  const latest = path.join(killed, "latest.json");
  // kill -9 as soon as a checkpoint beyond step 3 exists (the run is mid-way, possibly mid-write)
  for (;;) {
    await new Promise((r) => setTimeout(r, 5));
    try {
      if ((JSON.parse(fs.readFileSync(latest, "utf8")) as { step: number }).step >= 3) break;
    } catch {
      /* not written yet */
    }
  }
  run.proc.kill("SIGKILL");
  const k = await run;
  assert.equal(k.signal, "SIGKILL");
  const at = (JSON.parse(fs.readFileSync(latest, "utf8")) as { step: number }).step;
  assert.ok(at < 30, `the run finished (step ${at}) before it was killed`);
  assert.equal((await runCli([...args(killed), "--resume"])).code, 0);
  const w = (d: string) => fs.readFileSync(path.join(resolveCheckpointDir(d), WEIGHTS_FILE));
  assert.ok(w(clean).equals(w(killed)), "final weights differ");
  const curve = (d: string) => readMetrics(d).map((m) => [m.kind, m.step, m.loss, m.lr, m.grad_norm, m.ppl]);
  assert.deepEqual(curve(killed), curve(clean));
  assert.equal(curve(clean).filter((c) => c[0] === "train").length, 30);
  // resuming with a changed setting is refused, naming it
  const r = cli([...args(killed), "--resume", "--lr", "1e-3", "--steps", "31"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /config differs in .*steps.*lr|config differs in .*lr.*steps/);
  // and a second fresh run into the same folder is refused
  assert.equal(cli(args(killed)).code, 2);
});

test("Ctrl-C (SIGINT) saves a checkpoint of the steps done, exits 130, and --resume continues from it", async () => {
  const out = path.join(tmpDir("sigint-"), "run");
  // checkpoints only every 1000 steps: whatever is on disk after the interrupt was saved by the interrupt
  const args = [
    "train",
    "--db",
    DB,
    "--out",
    out,
    "--d",
    "32",
    "--heads",
    "2",
    "--layers",
    "2",
    "--seq",
    "32",
    "--batch",
    "4",
    "--steps",
    "600",
    "--save-every",
    "1000",
    "--eval-every",
    "1000",
    "--eval-batches",
    "1",
  ];
  const run = runCli(args);
  const metrics = path.join(out, "metrics.jsonl");
  for (;;) {
    await new Promise((r) => setTimeout(r, 5));
    if (fs.existsSync(metrics) && fs.readFileSync(metrics, "utf8").split("\n").length > 5) break;
  }
  run.proc.kill("SIGINT");
  const r = await run;
  assert.equal(r.code, 130);
  const at = (JSON.parse(fs.readFileSync(path.join(out, "latest.json"), "utf8")) as { step: number }).step;
  const trained = readMetrics(out).filter((m) => m.kind === "train");
  assert.ok(at >= 5 && at < 600, `checkpoint at step ${at}`);
  assert.equal(at, trained[trained.length - 1].step, "the checkpoint holds every step the run logged");
  // resumed from that step: the next logged step is at + 1, and the run ends at its last step
  const res = cli([...args, "--resume"]);
  assert.equal(res.code, 0, res.stderr);
  const after = readMetrics(out)
    .filter((m) => m.kind === "train")
    .map((m) => m.step);
  assert.equal(after[trained.length], at + 1);
  assert.equal(after[after.length - 1], 600);
  // and byte-identical to a run never interrupted
  const clean = path.join(path.dirname(out), "clean");
  assert.equal(cli(args.map((a) => (a === out ? clean : a))).code, 0);
  const weights = (run: string) => readSafetensors(path.join(resolveCheckpointDir(run), WEIGHTS_FILE)).data;
  assert.ok(Buffer.compare(weights(out), weights(clean)) === 0, "interrupted + resumed ≠ uninterrupted");
});

test("SIGTERM (a scheduler's stop) saves a checkpoint like Ctrl-C", async () => {
  const out = path.join(tmpDir("sigterm-"), "run");
  const args = ["train", "--db", DB, "--out", out, "--d", "32", "--heads", "2", "--layers", "2", "--seq", "32"];
  args.push("--batch", "4", "--steps", "600", "--save-every", "1000", "--eval-every", "1000", "--eval-batches", "1");
  const run = runCli(args);
  const metrics = path.join(out, "metrics.jsonl");
  for (;;) {
    await new Promise((r) => setTimeout(r, 5));
    if (fs.existsSync(metrics) && fs.readFileSync(metrics, "utf8").split("\n").length > 5) break;
  }
  run.proc.kill("SIGTERM");
  const r = await run;
  assert.equal(r.code, 130); // the CLI reports an interrupted run with 130, whichever signal stopped it
  const at = (JSON.parse(fs.readFileSync(path.join(out, "latest.json"), "utf8")) as { step: number }).step;
  assert.ok(at >= 5 && at < 600, `checkpoint at step ${at}`);
});

test("a run moved together with its database keeps working; moved alone, it says to pass --db", async () => {
  const root = tmpDir("move-");
  const home = path.join(root, "project");
  fs.cpSync(DB, path.join(home, "db"), { recursive: true });
  const run = path.join(home, "runs", "gpt");
  const common = ["--d", "32", "--heads", "2", "--layers", "2", "--seq", "32", "--batch", "4", "--eval-batches", "1"];
  let r = cli([
    "train",
    "--db",
    path.join(home, "db"),
    "--out",
    run,
    "--model",
    "gpt",
    "--steps",
    "6",
    "--stop-after",
    "2",
    ...common,
  ]);
  assert.equal(r.code, 0, r.stderr);
  // recorded relative to the run: the two share the project folder
  assert.equal(JSON.parse(fs.readFileSync(path.join(run, "config.json"), "utf8")).db, path.join("..", "..", "db"));
  // a run started from another (GPT-fitting) records its init relative too: a folder of runs moves as one
  const fit = ["--model", "gpt", "--steps", "4", ...common];
  r = cli([
    "train",
    "--db",
    path.join(home, "db"),
    "--out",
    path.join(home, "runs", "fit"),
    "--init",
    run,
    ...fit,
    "--stop-after",
    "2",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(fs.readFileSync(path.join(home, "runs", "fit", "config.json"), "utf8")).init, "../gpt");
  const moved = path.join(root, "elsewhere", "project");
  fs.mkdirSync(path.dirname(moved));
  fs.renameSync(home, moved);
  const movedRun = path.join(moved, "runs", "gpt");
  r = cli(["eval", "ppl", "--ckpt", movedRun, "--batches", "1"]);
  assert.equal(r.code, 0, r.stderr);
  // resumed where it is now, given its init where that is now (as `retro demo` resumes its runs), to its end
  r = cli(["train", "--out", path.join(moved, "runs", "fit"), "--resume", "--init", movedRun, "--steps", "4"]);
  assert.equal(r.code, 0, r.stderr);
  const fitLatest = path.join(moved, "runs", "fit", "latest.json");
  assert.equal((JSON.parse(fs.readFileSync(fitLatest, "utf8")) as { step: number }).step, 4);
  const alone = path.join(root, "alone", "x", "gpt");
  fs.cpSync(movedRun, alone, { recursive: true });
  r = cli(["train", "--out", movedRun, "--resume", "--model", "gpt", "--steps", "6", ...common]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(fs.readFileSync(path.join(movedRun, "latest.json"), "utf8")) as { step: number }).step, 6);
  // the run alone, somewhere else: a clear error that names the way out, then --db works and is remembered
  r = cli(["eval", "ppl", "--ckpt", alone, "--batches", "1"]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /database not found: .*pass --db DIR/);
  r = cli(["eval", "ppl", "--ckpt", alone, "--db", path.join(moved, "db"), "--batches", "1"]);
  assert.equal(r.code, 0, r.stderr);
  r = cli(["train", "--out", alone, "--resume"]);
  assert.match(r.stderr, /pass --db DIR/);
  r = cli(["train", "--out", alone, "--resume", "--db", path.join(moved, "db")]);
  assert.equal(r.code, 0, r.stderr);
  r = cli(["eval", "ppl", "--ckpt", alone, "--batches", "1"]); // config.json now names the database's new place
  assert.equal(r.code, 0, r.stderr);
});

test("Retro-fitting with a frozen decoder trains only the encoder and CCA; GPT-fitting continues all", async () => {
  const base = tmpDir("fit-");
  const common = { db: DB, batch: 4, steps: 6, evalEvery: 6, evalBatches: 1, saveEvery: 6, warmup: 1, lr: 3e-3 };
  await train(path.join(base, "gpt"), { ...common, model: { model: "gpt", ...MODEL } });
  const gptDir = resolveCheckpointDir(path.join(base, "gpt"));
  const frozen = await train(path.join(base, "frozen"), {
    ...common,
    init: path.join(base, "gpt"),
    freezeDecoder: true,
    model: { model: "retro", cca_layers: [2] },
  });
  assert.ok(frozen.load && frozen.load.fresh.length > 0 && frozen.load.fresh.every((n) => /encoder|xattn|lnc/.test(n)));
  const before = readSafetensors(path.join(gptDir, WEIGHTS_FILE));
  const after = readSafetensors(path.join(resolveCheckpointDir(path.join(base, "frozen")), WEIGHTS_FILE));
  for (const name of before.tensors.keys())
    assert.deepEqual(tensorF32(after, name), tensorF32(before, name), `${name} changed`);
  let trained = 0;
  const fresh = new Model(readCheckpointConfig(resolveCheckpointDir(path.join(base, "frozen"))), { seed: 1234 });
  for (const name of after.tensors.keys())
    if (
      !before.tensors.has(name) &&
      name.endsWith("weight") &&
      !tensorF32(after, name).every((v, i) => v === fresh.store.get(name).data[i])
    )
      trained++;
  assert.ok(trained > 10, `only ${trained} retrieval tensors trained`);
  const fit = await train(path.join(base, "gptfit"), { ...common, init: path.join(base, "gpt") });
  const cont = readSafetensors(path.join(resolveCheckpointDir(path.join(base, "gptfit")), WEIGHTS_FILE));
  assert.notDeepEqual(tensorF32(cont, "blocks.0.attn.q.weight"), tensorF32(before, "blocks.0.attn.q.weight"));
  assert.equal(fit.load!.fresh.length, 0);
  // a Retro checkpoint cannot be GPT-fitted into a GPT (names the extra tensors)
  await assert.rejects(
    train(path.join(base, "bad"), { ...common, init: path.join(base, "frozen"), model: { model: "gpt" } }),
    /unexpected tensor .*(encoder|xattn|lnc)/,
  );
});

test("Retro-fitting with --retrieval-init decoder: encoder layers and each CCA start as copies of the decoder's", async () => {
  const base = tmpDir("fit-dec-");
  const common = { db: DB, batch: 4, evalEvery: 2, evalBatches: 1, saveEvery: 2, warmup: 0 };
  await train(path.join(base, "gpt"), { ...common, steps: 2, lr: 3e-3, model: { model: "gpt", ...MODEL } });
  // one step at a learning rate of 1e-9: what is saved is the initialisation (Adam moves a weight by ≤ lr)
  const fitOnce = async (name: string, over: Record<string, unknown>) => {
    const out = path.join(base, name);
    await train(out, { ...common, steps: 1, lr: 1e-9, minLr: 1e-9, init: path.join(base, "gpt"), ...over });
    return out;
  };
  const run = await fitOnce("rfit", {
    retrievalInit: "decoder",
    model: { model: "retro", cca_layers: [1, 2], enc_layers: 2 },
  });
  const w = readSafetensors(path.join(resolveCheckpointDir(run), WEIGHTS_FILE));
  const near = (a: string, b: string) => {
    const x = tensorF32(w, a),
      y = tensorF32(w, b);
    assert.equal(x.length, y.length, `${a} vs ${b}`);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) < 1e-6, `${a}[${i}] ${x[i]} vs ${b} ${y[i]}`);
  };
  for (const j of [0, 1]) {
    for (const t of ["attn.q", "attn.kv", "attn.o", "mlp.fc", "mlp.proj", "ln1", "ln2"])
      near(`encoder.${j}.${t}.weight`, `blocks.${j}.${t}.weight`);
    for (const t of ["q", "kv", "o"]) near(`blocks.${j}.xattn.${t}.weight`, `blocks.${j}.attn.${t}.weight`);
    near(`blocks.${j}.lnc.bias`, `blocks.${j}.ln1.bias`);
  }
  assert.ok(
    tensorF32(w, "encoder.0.xattn.o.weight").every((v) => Math.abs(v) < 1e-6),
    "chunk conditioning starts at 0",
  );
  assert.equal(JSON.parse(fs.readFileSync(path.join(run, "config.json"), "utf8")).retrievalInit, "decoder");
  // the default draws them at random
  const rnd = await fitOnce("rnd", { model: { model: "retro" } });
  const r = readSafetensors(path.join(resolveCheckpointDir(rnd), WEIGHTS_FILE));
  assert.notDeepEqual(tensorF32(r, "encoder.0.attn.q.weight"), tensorF32(r, "blocks.0.attn.q.weight"));
});

test("eval ppl equals exp(mean token loss) computed independently from the logits", () => {
  const db = new Database(DB);
  const cfg = resolveTrainConfig({ db: DB, model: { model: "retro", ...MODEL } }, db).model;
  const model = new Model(cfg, { seed: 5 });
  const r = evaluate(model, db, { batch: 3 });
  // independent: every held-out item once, log-softmax in float64 from the logits
  const loader = new Loader(db, { split: "valid", seq: 32, batch: 1, seed: 0, retrieval: { k: 2, r: 32 } });
  let sum = 0,
    count = 0;
  for (let i = 0; i < loader.items; i++) {
    const b = loader.next();
    model.forward(b, { keepLogits: true });
    const logits = model.logits(),
      V = cfg.vocab;
    for (let t = 0; t < b.n; t++) {
      let mx = -Infinity;
      for (let v = 0; v < V; v++) mx = Math.max(mx, logits[t * V + v]);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[t * V + v] - mx);
      sum += Math.log(z) + mx - logits[t * V + b.targets[t]];
      count++;
    }
  }
  assert.equal(r.tokens, count);
  assert.ok(Math.abs(r.ppl - Math.exp(sum / count)) / r.ppl < 1e-5, `${r.ppl} vs ${Math.exp(sum / count)}`);
  // gate 0 is the decoder alone: a different number, and the model's own gate is restored
  const g0 = evaluate(model, db, { batch: 3, gate: 0 });
  assert.notEqual(g0.loss, r.loss);
  assert.equal(model.gate, 1);
  db.close();
});

test("runs that do not fit their database are refused with clear errors", async () => {
  const db = new Database(DB);
  assert.throws(
    () => resolveTrainConfig({ db: DB, model: { vocab: 999 } }, db),
    (e: unknown) =>
      e instanceof RetroError && e.code === 6 && /model vocab 999 ≠ database tokenizer bpe400/.test(e.message),
  );
  assert.throws(
    () => resolveTrainConfig({ db: DB, model: { model: "retro", chunk: 32, seq: 64 } }, db),
    /model chunk 32 ≠ database chunk length 16/,
  );
  assert.throws(() => resolveTrainConfig({ db: DB, stepz: 3 }, db), /unknown train config key\(s\): stepz/);
  assert.throws(
    () => new Loader(db, { split: "train", seq: 48, batch: 2, seed: 1 }),
    /model seq 48 must divide the database's sample length 64/,
  );
  assert.throws(
    () => new Loader(db, { split: "train", seq: 32, batch: 2, seed: 1, retrieval: { k: 9, r: 32 } }),
    /k = 9 neighbours asked, the database kept 4/,
  );
  // a checkpoint evaluated against a database of another tokenizer
  const out = tmpDir("ckpt-");
  await train(out, {
    db: DB,
    batch: 2,
    steps: 1,
    evalEvery: 1,
    evalBatches: 1,
    model: { model: "gpt", ...MODEL, vocab: 400 },
  });
  const root = tmpDir("db2-"),
    other = path.join(root, "db");
  await buildDatabase(
    other,
    smallConfig(writeTextCorpus(path.join(root, "c"), 12, 1500), { tokenizer: { kind: "bpe", vocabSize: 300 } }),
  );
  const r = cli(["eval", "ppl", "--ckpt", out, "--db", other]);
  assert.equal(r.code, 6);
  assert.match(r.stderr, /was trained with tokenizer bpe400-\w+, database .* has bpe300-/);
  // another tokenizer of the same size (issue 10: only the vocabulary size was compared)
  const same = path.join(root, "db400");
  await buildDatabase(same, smallConfig(path.join(root, "c"), { tokenizer: { kind: "bpe", vocabSize: 400 } }));
  const r2 = cli(["eval", "ppl", "--ckpt", out, "--db", same]);
  assert.equal(r2.code, 6, r2.stderr);
  assert.match(r2.stderr, /was trained with tokenizer bpe400-\w+, database .* has bpe400-/);
  const r3 = cli(["train", "--db", same, "--out", path.join(root, "fit"), "--init", out, "--steps", "1"]);
  assert.equal(r3.code, 6, r3.stderr);
  db.close();
});

test("plot: a continued run is drawn from its checkpoint's global step (chains add up)", async () => {
  const { startStep } = await import("../../src/train/plot.ts");
  const root = tmpDir("retro-plot-");
  const mk = (name: string, init: string | null, latestStep?: number) => {
    const d = path.join(root, name);
    fs.mkdirSync(path.join(d, "checkpoints", `step-${String(latestStep ?? 0).padStart(6, "0")}`), { recursive: true });
    fs.writeFileSync(path.join(d, "config.json"), JSON.stringify({ init }));
    if (latestStep !== undefined)
      fs.writeFileSync(
        path.join(d, "latest.json"),
        JSON.stringify({ step: latestStep, dir: `checkpoints/step-${String(latestStep).padStart(6, "0")}` }),
      );
    return d;
  };
  const gpt = mk("gpt", null, 400);
  const fit = mk("fit", gpt, 120);
  const sftRun = mk("sft", fit, 50);
  const fromCkpt = mk("from-ckpt", path.join(gpt, "checkpoints", "step-000400"));
  assert.equal(startStep(gpt), 0);
  assert.equal(startStep(fit), 400);
  assert.equal(startStep(sftRun), 520);
  assert.equal(startStep(fromCkpt), 400);
});
