/** `retro db …` (step 1: the retrieval database) and `retro corpus …` (the offline corpora). */
import * as fs from "node:fs";
import * as path from "node:path";
import { Option, type Command } from "commander";
import {
  buildDatabase,
  DB_MARKER,
  mergeQuery,
  parseShard,
  saveManifest,
  STAGES,
  stageQuery,
  samplesIn,
  type Stage,
} from "../db/build.ts";
import { lockFolder } from "../util/lock.ts";
import { Database } from "../db/database.ts";
import { addDocuments } from "../db/add.ts";
import { Retriever, type Citation } from "../db/retriever.ts";
import { DB_SETTINGS, QUERY_SETTINGS, resolveConfig } from "../db/config.ts";
import { INDEX_SETTINGS } from "../search/settings.ts";
import { addSettingFlags, settingValues } from "./flags.ts";
import { inspectSample, formatStats } from "../db/inspect.ts";
import { readUserJson } from "../util/fsx.ts";
import { RetroError } from "../util/errors.ts";
import type { DatasetSpec } from "../data/sources.ts";
import { CORPORA, corpusDataset, installCorpora, isInstalled } from "../data/catalogue.ts";
import { DEFAULT_PEOPLE, writePeopleCorpus } from "../data/people.ts";
import { writeMegatronDataset } from "../data/megatron.ts";
import { writeTwinCorpus } from "../data/synthetic.ts";
import { loadModel } from "../model/checkpoint.ts";
import { exportHf } from "../model/hf.ts";
import type { SplitReader } from "../data/tokenstore.ts";
import { collect, intFlag, numFlag, SEED_RANGE } from "./args.ts";

export function registerCorpus(program: Command): void {
  const corpus = program
    .command("corpus")
    .description("larger offline corpora (Debian packages) usable as datasets, and the synthetic knowledge corpus");
  corpus
    .command("list")
    .description("the installable corpora, their licences and whether they are installed")
    .action(() => {
      for (const c of CORPORA) {
        process.stdout.write(
          `${c.name.padEnd(8)} ${(isInstalled(c) ? "installed" : "-").padEnd(10)} ${c.debian.padEnd(15)} ` +
            `${c.licence.padEnd(14)} ${c.description}\n`,
        );
      }
      process.stdout.write(
        `\nuse one in a database: retro db build --corpus kjv --corpus web:0 ...  (NAME[:WEIGHT]; weight 0 = ` +
          `retrieval-only)\n`,
      );
    });
  corpus
    .command("install")
    .description("install corpora with apt-get (as root)")
    .argument("<names...>")
    .action((names: string[]) => {
      installCorpora(names);
    });
  corpus
    .command("people")
    .description(
      "write the labelled synthetic knowledge corpus (fictional people: A for pretraining, B for the database only, " +
        "C for a knowledge update) as JSONL files with a README",
    )
    .requiredOption("--out <dir>", "folder for the files")
    .option(
      "--seed <n>",
      "seed (the corpus is a pure function of it)",
      intFlag("--seed", SEED_RANGE),
      DEFAULT_PEOPLE.seed,
    )
    .option("--a <n>", "people in group A (pretraining text)", intFlag("--a", { min: 1 }), DEFAULT_PEOPLE.a)
    .option("--b <n>", "people in group B (retrieval-only)", intFlag("--b", { min: 1 }), DEFAULT_PEOPLE.b)
    .option("--c <n>", "people in group C (the update)", intFlag("--c", { min: 1 }), DEFAULT_PEOPLE.c)
    .option(
      "--d <n>",
      "people in group D (fitting text a Retro-fit trains on, with another biography each retrieval-only)",
      intFlag("--d", { min: 0 }),
      DEFAULT_PEOPLE.d ?? 0,
    )
    .action((o) => {
      const { files, corpus: c } = writePeopleCorpus(o.out, {
        ...DEFAULT_PEOPLE,
        seed: o.seed,
        a: o.a,
        b: o.b,
        c: o.c,
        d: o.d,
      });
      process.stdout.write(
        `${c.people.length} people, ${c.pretraining.length} pretraining documents → ${files.dir} (README.md says ` +
          `what each file is)\n`,
      );
    });
  corpus
    .command("twins")
    .description(
      "write the labelled synthetic twin corpus (random pseudo-word documents, and the same documents again for " +
        "a retrieval-only dataset): the check that a Retro reads its neighbours",
    )
    .requiredOption("--out <dir>", "folder for docs.jsonl and twins.jsonl")
    .option("--docs <n>", "documents (each written twice)", intFlag("--docs", { min: 1 }), 3000)
    .option(
      "--doc-tokens <n>",
      "tokens per document with its end token (a multiple of the chunk length keeps chunks aligned)",
      intFlag("--doc-tokens", { min: 3 }),
      64,
    )
    .option("--words <n>", "distinct pseudo-words", intFlag("--words", { min: 1, max: 4900 }), 200)
    .option("--seed <n>", "seed (the corpus is a pure function of it)", intFlag("--seed", SEED_RANGE), 1)
    .action((o) => {
      const files = writeTwinCorpus(o.out, { docs: o.docs, docTokens: o.docTokens, words: o.words, seed: o.seed });
      process.stdout.write(
        `${o.docs} documents → ${files.docs}, their twins → ${files.twins}\n` +
          `use: retro db build --jsonl ${files.docs} --jsonl ${files.twins}:0 ... (weight 0 = retrieval-only)\n`,
      );
    });
}

/**
 * A dataset flag's value: PATH or PATH:WEIGHT (the blend weight; 0 = retrieval-only). Only a trailing ":number"
 * is a weight, so paths that hold a colon elsewhere stay whole.
 */
export function withWeight(flag: string, spec: string): { path: string; weight: number } {
  const m = /^(.+):([^:/\\]*)$/.exec(spec);
  if (!m || !/^[0-9.eE+-]+$/.test(m[2]) || m[2] === "") return { path: spec, weight: 1 };
  const weight = Number(m[2]);
  if (!(weight >= 0) || !Number.isFinite(weight))
    throw new RetroError("usage", `${flag} ${spec}: the weight after ":" must be a number ≥ 0`);
  return { path: m[1], weight };
}

export function registerDb(program: Command): void {
  const db = program.command("db").description("step 1: the retrieval database");
  const build = db
    .command("build")
    .description("ingest a corpus, tokenize, chunk, embed, build the ANN index and precompute neighbours (resumable)")
    .requiredOption("--out <dir>", "database folder")
    .option("--config <file>", "JSON config (see README); flags below override it")
    .option(
      "--text <path[:weight]>",
      "add a plain-text file or folder as a dataset (repeatable; weight 0 = retrieval-only)",
      collect,
      [],
    )
    .option(
      "--jsonl <path[:weight]>",
      "add a JSONL file as a dataset (repeatable; weight 0 = retrieval-only)",
      collect,
      [],
    )
    .option(
      "--corpus <name[:weight]>",
      "add an installed offline corpus (retro corpus list) as a dataset (repeatable)",
      collect,
      [],
    )
    .option(
      "--megatron <prefix[:weight]>",
      "add a Megatron-LM indexed dataset (PREFIX.bin + PREFIX.idx, GPT-2 token ids; needs --tokenizer gpt2) " +
        "(repeatable)",
      collect,
      [],
    )
    .option("--field <name>", "JSONL text field", "text")
    .option("--skip-bad-lines", "skip malformed JSONL lines (counted) instead of failing")
    .option("--tokenizer <spec>", "gpt2 | bpe:<vocab size>")
    .addOption(new Option("--until <stage>", "stop after this stage").choices(STAGES));
  // the config's scalars, the index's and the neighbour query's settings: one flag per row of their tables
  addSettingFlags(build, DB_SETTINGS);
  addSettingFlags(build, INDEX_SETTINGS);
  addSettingFlags(build, QUERY_SETTINGS);
  build.action(async (o) => {
    // a database already there continues with its own config (`retro db build --out DB` resumes or rebuilds
    // what is missing); flags given over it must agree with it, as a --config must
    const own = path.join(o.out, "config.json");
    const cfg: Record<string, unknown> = o.config
      ? readUserJson<Record<string, unknown>>(o.config, "config")
      : fs.existsSync(path.join(o.out, DB_MARKER)) && fs.existsSync(own)
        ? readUserJson<Record<string, unknown>>(own, "database config")
        : {};
    const sets: DatasetSpec[] = [];
    for (const spec of o.text as string[]) {
      const { path: p, weight } = withWeight("--text", spec);
      sets.push({ name: `text${sets.length}`, source: "text", path: p, weight });
    }
    for (const spec of o.jsonl as string[]) {
      const { path: p, weight } = withWeight("--jsonl", spec);
      sets.push({
        name: `jsonl${sets.length}`,
        source: "jsonl",
        path: p,
        field: o.field,
        weight,
        onBadLine: o.skipBadLines ? "skip" : "fail",
      });
    }
    for (const spec of o.megatron as string[]) {
      const { path: p, weight } = withWeight("--megatron", spec);
      sets.push({ name: `megatron${sets.length}`, source: "megatron", path: p, weight });
    }
    for (const spec of o.corpus as string[]) {
      const { path: name, weight } = withWeight("--corpus", spec);
      sets.push(corpusDataset(name, weight));
    }
    if (sets.length) cfg.datasets = sets;
    if (o.tokenizer) {
      const m = /^(gpt2|bpe(?::(\d+))?)$/.exec(o.tokenizer);
      if (!m) throw new RetroError("usage", `--tokenizer: expected gpt2 or bpe:<size>, got "${o.tokenizer}"`);
      cfg.tokenizer =
        m[1] === "gpt2" ? { kind: "gpt2" } : m[2] ? { kind: "bpe", vocabSize: Number(m[2]) } : { kind: "bpe" };
    }
    Object.assign(cfg, settingValues(o, DB_SETTINGS));
    for (const [section, table] of [
      ["index", INDEX_SETTINGS],
      ["query", QUERY_SETTINGS],
    ] as const) {
      const given = settingValues(o, table);
      if (Object.keys(given).length) cfg[section] = { ...((cfg[section] as object) ?? {}), ...given };
    }
    const man = await buildDatabase(o.out, cfg, { until: o.until as Stage | undefined });
    console.log(formatStats(man));
  });

  db.command("add")
    .description(
      "add documents to a built database as a retrieval-only dataset (tokenized, embedded, indexed; atomic; no " +
        "retraining)",
    )
    .requiredOption("--db <dir>", "database folder")
    .requiredOption("--name <name>", "name of the new dataset (as citations will show it)")
    .option("--text <path>", "a plain-text file or a folder of them (one document per file)")
    .option("--jsonl <file>", "a JSONL file, one document per line")
    .option(
      "--megatron <prefix[:weight]>",
      "add a Megatron-LM indexed dataset (PREFIX.bin + PREFIX.idx, GPT-2 token ids; needs --tokenizer gpt2) " +
        "(repeatable)",
      collect,
      [],
    )
    .option("--field <name>", "JSONL text field", "text")
    .option("--skip-bad-lines", "skip malformed JSONL lines (counted) instead of failing")
    .action(async (o) => {
      if ((o.text === undefined) === (o.jsonl === undefined))
        throw new RetroError("usage", "give one of --text PATH or --jsonl FILE");
      const spec: DatasetSpec =
        o.text !== undefined
          ? { name: o.name, source: "text", path: o.text, weight: 0 }
          : {
              name: o.name,
              source: "jsonl",
              path: o.jsonl,
              field: o.field,
              weight: 0,
              onBadLine: o.skipBadLines ? "skip" : "fail",
            };
      console.log(JSON.stringify(await addDocuments(o.db, spec)));
    });

  db.command("query")
    .description(
      "precompute (or resume) the neighbours of every sample chunk of a split; --shard i/n computes one slice " +
        "(N processes or machines sharing the folder), --merge n checks the n slices and records the split",
    )
    .requiredOption("--db <dir>", "database folder")
    .option("--split <name>", "train | valid", "valid")
    .option("--shard <i/n>", "compute only blocks b with b mod n = i (the manifest is left to --merge)")
    .option(
      "--merge <n>",
      "after n shards: check every block is there once, record the split",
      intFlag("--merge", { min: 1 }),
    )
    .action(async (o) => {
      if (o.shard && o.merge) throw new RetroError("usage", "give --shard or --merge, not both");
      const d = new Database(o.db);
      try {
        const c = resolveConfig(d.config);
        if (o.shard) {
          const shard = parseShard(o.shard);
          await stageQuery(o.db, c, d, o.split, shard);
          console.log(`shard ${shard.i}/${shard.n} of the ${o.split} neighbours ready (merge with --merge ${shard.n})`);
          return;
        }
        // recording the split writes the manifest: one writer at a time
        const unlock = lockFolder(o.db, "retro db query");
        try {
          if (o.merge) await mergeQuery(o.db, c, d, o.split, o.merge);
          else await stageQuery(o.db, c, d, o.split);
          saveManifest(o.db, d.manifest);
        } finally {
          unlock();
        }
        console.log(`neighbours of ${samplesIn(d, o.split, d.config.query.seq)} ${o.split} samples ready`);
      } finally {
        d.close();
      }
    });

  db.command("search")
    .description("the database's top-k chunks for a text: dataset, document, score and text of each")
    .requiredOption("--db <dir>", "database folder")
    .argument("<text...>", "what to search for")
    .option("--k <n>", "chunks to show", intFlag("--k", { min: 1, max: 1000 }), 5)
    .option("--bm25", "rank by the query's words (BM25) whatever the database's own index")
    .option("--chars <n>", "characters of text per chunk (0: all)", intFlag("--chars", { min: 0 }), 300)
    .option("--json", "one JSON object per line: {rank, chunk, dataset, document, score, text}")
    .action(async (words: string[], o) => {
      const d = new Database(o.db);
      try {
        const r = o.bm25 ? await Retriever.bm25(d) : await Retriever.open(d);
        const hits = await r.searchText(words.join(" "), o.k);
        if (o.json) for (const [i, h] of hits.entries()) console.log(JSON.stringify({ rank: i + 1, ...h }));
        else console.log(formatHits(hits, o.chars) || "no chunk found");
      } finally {
        d.close();
      }
    });

  db.command("inspect")
    .description("print sample chunks with their retrieved neighbours as text")
    .requiredOption("--db <dir>", "database folder")
    .option("--split <name>", "train | valid", "valid")
    .option("--sample <list>", "sample indices, comma-separated (e.g. 0,40,120)", "0")
    .option("--chunks <n>", "chunks of the sample to show", intFlag("--chunks", { min: 1 }), 2)
    .option("--k <n>", "neighbours per chunk", intFlag("--k", { min: 1 }), 2)
    .option("--chars <n>", "characters of text per item", intFlag("--chars", { min: 1 }), 300)
    .action((o) => {
      const d = new Database(o.db);
      const samples = String(o.sample)
        .split(",")
        .map((x) => {
          const i = Number(x);
          if (!Number.isInteger(i) || i < 0) throw new RetroError("usage", `--sample: "${x}" is not a sample index`);
          return i;
        });
      console.log(samples.map((i) => inspectSample(d, o.split, i, o.chunks, o.k, o.chars)).join("\n\n"));
    });

  db.command("stats")
    .description("counts, sizes and settings of a database")
    .requiredOption("--db <dir>", "database folder")
    .action((o) => {
      const d = new Database(o.db);
      console.log(formatStats(d.manifest, o.db));
    });
}

/** Search hits as text: a header line per hit (rank, score, dataset, document, chunk), then its text. */
function formatHits(hits: Citation[], chars: number): string {
  return hits
    .map((h, i) => {
      const text = h.text.replace(/\s+/g, " ").trim();
      const shown = chars > 0 && text.length > chars ? `${text.slice(0, chars)}…` : text;
      return (
        `#${i + 1}  score ${h.score.toFixed(4)}  ${h.dataset} document ${h.document}  chunk ${h.chunk}\n  ` + `${shown}`
      );
    })
    .join("\n\n");
}

export function registerExport(program: Command): void {
  const ex = program
    .command("export")
    .description("hand-offs to other engines: Hugging Face GPT-2 folders, Megatron-LM's data format");
  ex.command("hf")
    .description(
      "a GPT, or a Retro's decoder at CCA gate 0, as a Hugging Face GPT2LMHeadModel folder (config.json, " +
        "model.safetensors, vocab.json, merges.txt) that transformers loads with from_pretrained",
    )
    .requiredOption("--ckpt <dir>", "run or checkpoint folder (a model of a database built --tokenizer gpt2)")
    .requiredOption("--out <dir>", "output folder")
    .option(
      "--gate <g>",
      "a Retro's CCA gate: 0 exports its decoder alone (InstructRetro's use)",
      numFlag("--gate", { min: 0, max: 0 }),
    )
    .option(
      "--full",
      "a Retro whole: the decoder as GPT-2's keys plus its encoder and CCA under retro-ts's key map " +
        "(docs/training.md; hf:DIR reads it back, no transformers class reads the retrieval part)",
    )
    .action((o) => {
      const { model, tokenizer } = loadModel(o.ckpt);
      if (o.gate !== undefined && o.full)
        throw new RetroError("usage", "--gate 0 exports the decoder alone; --full the whole Retro: not both");
      if (o.gate !== undefined) model.gate = o.gate;
      const r = exportHf(model, tokenizer ?? "unknown", o.out, { full: Boolean(o.full) });
      console.log(JSON.stringify({ out: o.out, model: model.config.model, ...r }));
    });
  ex.command("megatron-data")
    .description(
      "a database's tokenized documents as Megatron-LM's indexed dataset (PREFIX.bin + PREFIX.idx, MMIDIDX " +
        "version 1, one sequence per document ending with the end-of-document token): a Megatron GPT or Retro " +
        "run trains on the same tokens",
    )
    .requiredOption("--db <dir>", "database folder")
    .requiredOption("--out <prefix>", "output prefix: PREFIX.bin and PREFIX.idx are written (atomically)")
    .addOption(
      new Option(
        "--split <name>",
        "which split; all = both, each dataset's documents in their original order (a database built from one " +
          "Megatron dataset gives it back byte for byte)",
      )
        .choices(["train", "valid", "all"])
        .default("train"),
    )
    .option("--trained-only", "leave out the retrieval-only datasets (weight 0): the documents training reads")
    .action((o) => {
      const d = new Database(o.db);
      try {
        const splits = o.split === "all" ? [d.split("train"), d.split("valid")] : [d.split(o.split)];
        const retrievalOnly = new Set(
          (d.manifest.datasets ?? []).flatMap((ds, i) => (o.trainedOnly && ds.weight === 0 ? [i] : [])),
        );
        // (split, document) pairs in export order: a split's own order, or with `all` by (dataset, ordinal)
        const order: [SplitReader, number][] = splits.flatMap((r) =>
          Array.from({ length: r.nDocs }, (_, i): [SplitReader, number] => [r, i]).filter(
            ([, i]) => !retrievalOnly.has(r.docDataset(i)),
          ),
        );
        if (o.split === "all") order.sort(([ra, a], [rb, b]) => ra.docKey(a) - rb.docKey(b));
        const eod = d.tokenizer.eod;
        function* docs(): Generator<Uint32Array> {
          for (const [r, i] of order) {
            const start = r.docStart(i),
              len = r.docLength(i);
            const ids = new Uint32Array(len + 1);
            ids.set(r.read(start, start + len));
            ids[len] = eod;
            yield ids;
          }
        }
        fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
        const sum = writeMegatronDataset(o.out, docs(), d.tokenizer.vocabSize);
        console.log(JSON.stringify({ prefix: o.out, tokenizer: d.tokenizer.id, ...sum }));
      } finally {
        d.close();
      }
    });
}
