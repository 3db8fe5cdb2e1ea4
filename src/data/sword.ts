/**
 * A reader for SWORD Bible modules of the zText driver (Debian's sword-text-kjv, sword-text-web, ...),
 * one document per chapter ("Gen.1", "Matt.5", ...), verses joined by newlines.
 *
 * Written by hand: no npm package reads SWORD modules (the C++ libsword is the reference; Debian ships it
 * but not as something Node can load), and the zText format is small. Per testament ("ot", "nt"), three files:
 *   - `.bzs` blocks: 12 bytes each, little-endian u32 (offset in .bzz, compressed size, uncompressed size);
 *   - `.bzv` verse slots: 10 bytes each, u32 block, u32 offset in the uncompressed block, u16 size;
 *   - `.bzz` the zlib-compressed blocks (CompressType=ZIP).
 * Slots follow the module's versification: module and testament headers, then per book an introduction
 * slot, per chapter an introduction slot, then the verses. The book and chapter introductions written by
 * osis2mod carry the OSIS milestones `<div type="book" osisID=...>` and `<chapter osisID="Book.N">`, so the
 * structure is read from the text rather than from a versification table: a chapter starts at its
 * `<chapter>` milestone and its verses are the slots that follow, numbered by position.
 * Verse text is OSIS markup: notes and headings are dropped, the other tags stripped, entities decoded.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { RetroError } from "../util/errors.ts";
import type { Document } from "./document.ts";

/** Where Debian's sword-text-* packages put modules; SWORD_PATH (colon-separated) is searched first. */
export const SWORD_ROOTS = ["/usr/share/sword"];

export interface SwordModule {
  /** module id, e.g. engKJV2006eb */
  name: string;
  /** folder holding ot.bz? / nt.bz? */
  dir: string;
  /** key=value pairs of the module's .conf (empty when the path named the data folder directly) */
  conf: Record<string, string>;
}

function parseConf(text: string): { name: string; conf: Record<string, string> } {
  const m = text.match(/^\s*\[([^\]]+)\]/m);
  const conf: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const kv = line.match(/^([A-Za-z][\w.]*)=(.*)$/);
    if (kv && !(kv[1] in conf)) conf[kv[1]] = kv[2].trim();
  }
  return { name: m ? m[1] : "", conf };
}

function roots(): string[] {
  const env = process.env.SWORD_PATH ? process.env.SWORD_PATH.split(":").filter(Boolean) : [];
  return [...env, ...SWORD_ROOTS];
}

/**
 * Find a module: `spec` is a module id (engKJV2006eb, case-insensitive) looked up in the mods.d of each
 * SWORD root, a .conf file, or a data folder holding ot.bzs/nt.bzs. `installHint` names the package.
 */
export function findSwordModule(spec: string, installHint?: string): SwordModule {
  const hint = installHint ? ` (install it: ${installHint})` : "";
  if (fs.existsSync(spec) && fs.statSync(spec).isDirectory()) {
    if (!["ot.bzs", "nt.bzs"].some((f) => fs.existsSync(path.join(spec, f)))) {
      throw new RetroError("badInput", `${spec}: not a SWORD zText module folder (no ot.bzs or nt.bzs)`);
    }
    return { name: path.basename(path.resolve(spec)), dir: spec, conf: {} };
  }
  const fromConf = (file: string, root: string): SwordModule => {
    const { name, conf } = parseConf(fs.readFileSync(file, "utf8"));
    if (!conf.DataPath) throw new RetroError("corrupt", `${file}: SWORD module .conf without DataPath`);
    if (conf.ModDrv && conf.ModDrv.toLowerCase() !== "ztext") {
      throw new RetroError("badInput", `${file}: module driver ${conf.ModDrv} is not supported (only zText)`);
    }
    if (conf.CompressType && conf.CompressType.toUpperCase() !== "ZIP") {
      throw new RetroError("badInput", `${file}: compression ${conf.CompressType} is not supported (only ZIP)`);
    }
    return { name: name || path.basename(file, ".conf"), dir: path.join(root, conf.DataPath), conf };
  };
  if (spec.endsWith(".conf")) {
    if (!fs.existsSync(spec)) throw new RetroError("notFound", `SWORD module conf not found: ${spec}${hint}`);
    return fromConf(spec, path.dirname(path.dirname(path.resolve(spec))));
  }
  for (const root of roots()) {
    const modsd = path.join(root, "mods.d");
    if (!fs.existsSync(modsd)) continue;
    for (const f of fs
      .readdirSync(modsd)
      .filter((f) => f.endsWith(".conf"))
      .sort()) {
      const file = path.join(modsd, f);
      const { name } = parseConf(fs.readFileSync(file, "utf8"));
      if ((name || path.basename(f, ".conf")).toLowerCase() === spec.toLowerCase()) return fromConf(file, root);
    }
  }
  throw new RetroError("notFound", `SWORD module "${spec}" not found in ${roots().join(", ")}${hint}`);
}

/** OSIS verse markup → plain text: notes and headings dropped, tags stripped, entities decoded, spaces collapsed. */
export function osisToText(osis: string): string {
  return (
    osis
      .replace(/<note\b[^>]*\/>/g, "")
      .replace(/<note\b[\s\S]*?<\/note>/g, "\u0000")
      .replace(/<title\b[\s\S]*?<\/title>/g, "\u0000")
      .replace(/<[^>]*>/g, "")
      // a dropped note between two words ("born<note>…</note>Son") leaves a space, elsewhere nothing
      .replace(/(?<=\w)\u0000+(?=\w)/g, " ")
      .replace(/\u0000/g, "")
      .replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-f]+);/gi, (_, e: string) => {
        const k = e.toLowerCase();
        if (k === "lt") return "<";
        if (k === "gt") return ">";
        if (k === "amp") return "&";
        if (k === "quot") return '"';
        if (k === "apos") return "'";
        return String.fromCodePoint(k.startsWith("#x") ? parseInt(k.slice(2), 16) : parseInt(k.slice(1), 10));
      })
      .replace(/¶\s*/g, "") // the KJV's paragraph marks: layout, not text
      .replace(/\s+/g, " ")
      .trim()
  );
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The verse slots of one testament, decoded (an empty string for an empty slot). */
export function readTestament(dir: string, testament: "ot" | "nt"): string[] | null {
  const f = (ext: string) => path.join(dir, `${testament}.${ext}`);
  if (!fs.existsSync(f("bzs"))) return null;
  for (const ext of ["bzv", "bzz"]) {
    if (!fs.existsSync(f(ext)))
      throw new RetroError("corrupt", `SWORD module ${dir}: ${testament}.bzs without ${testament}.${ext}`);
  }
  const bzs = fs.readFileSync(f("bzs")),
    bzv = fs.readFileSync(f("bzv")),
    bzz = fs.readFileSync(f("bzz"));
  if (bzs.length % 12 !== 0)
    throw new RetroError("corrupt", `${f("bzs")}: size ${bzs.length} is not a multiple of 12 (damaged module)`);
  if (bzv.length % 10 !== 0)
    throw new RetroError("corrupt", `${f("bzv")}: size ${bzv.length} is not a multiple of 10 (damaged module)`);
  const nBlocks = bzs.length / 12;
  const blocks = new Map<number, Buffer>();
  const block = (b: number): Buffer => {
    let got = blocks.get(b);
    if (got) return got;
    if (b >= nBlocks)
      throw new RetroError(
        "corrupt",
        `${f("bzv")}: a verse names block ${b}, the module has ${nBlocks} (damaged module)`,
      );
    const off = bzs.readUInt32LE(b * 12),
      size = bzs.readUInt32LE(b * 12 + 4),
      usize = bzs.readUInt32LE(b * 12 + 8);
    if (off + size > bzz.length)
      throw new RetroError(
        "corrupt",
        `${f("bzz")}: block ${b} ends at byte ${off + size}, the file has ${bzz.length} (damaged module)`,
      );
    try {
      got = zlib.inflateSync(bzz.subarray(off, off + size));
    } catch (e) {
      throw new RetroError(
        "corrupt",
        `${f("bzz")}: block ${b} does not decompress (${(e as Error).message}; damaged module)`,
      );
    }
    if (got.length !== usize)
      throw new RetroError(
        "corrupt",
        `${f("bzz")}: block ${b} holds ${got.length} bytes, its index says ${usize} (damaged module)`,
      );
    blocks.clear(); // slots are in block order: keep one block in memory
    blocks.set(b, got);
    return got;
  };
  const out: string[] = [];
  for (let i = 0; i < bzv.length / 10; i++) {
    const b = bzv.readUInt32LE(i * 10),
      start = bzv.readUInt32LE(i * 10 + 4),
      n = bzv.readUInt16LE(i * 10 + 8);
    if (n === 0) {
      out.push("");
      continue;
    }
    const data = block(b);
    if (start + n > data.length)
      throw new RetroError(
        "corrupt",
        `${f("bzv")}: slot ${i} reads bytes ${start}..${start + n} of block ${b}, which has ${data.length} (damaged ` +
          `module)`,
      );
    try {
      out.push(utf8.decode(data.subarray(start, start + n)));
    } catch {
      throw new RetroError("corrupt", `${f("bzz")}: slot ${i} is not valid UTF-8 (damaged module)`);
    }
  }
  return out;
}

export interface Chapter {
  /** OSIS id, e.g. "Gen.1" */
  osisID: string;
  book: string;
  chapter: number;
  /** verse texts by verse number - 1 (an empty string for a verse the module leaves out) */
  verses: string[];
}

/** The chapters of a module, in canonical order (OT then NT). */
export function* swordChapters(mod: SwordModule): Generator<Chapter> {
  let any = false;
  for (const t of ["ot", "nt"] as const) {
    const slots = readTestament(mod.dir, t);
    if (!slots) continue;
    any = true;
    let cur: Chapter | null = null;
    for (const s of slots) {
      const ch = s.match(/<chapter\b[^>]*\bosisID="([^".]+)\.(\d+)"/);
      if (ch) {
        if (cur) yield cur;
        cur = { osisID: `${ch[1]}.${ch[2]}`, book: ch[1], chapter: Number(ch[2]), verses: [] };
        continue;
      }
      if (/<div\b(?=[^>]*\btype="book")(?=[^>]*\bsID=)[^>]*>/.test(s)) {
        // a book introduction: the verses of the previous chapter are over
        if (cur) yield cur;
        cur = null;
        continue;
      }
      if (cur) cur.verses.push(osisToText(s));
    }
    if (cur) yield cur;
  }
  if (!any) throw new RetroError("badInput", `SWORD module ${mod.dir}: neither ot.bzs nor nt.bzs`);
}

/** One document per chapter with at least one verse of text; key = the chapter's OSIS id. */
export async function* swordDocs(mod: SwordModule): AsyncGenerator<Document> {
  for (const c of swordChapters(mod)) {
    // drop empty trailing slots (osis2mod leaves none, but a verse left out in a translation is empty)
    const text = c.verses.filter((v) => v.length > 0).join("\n");
    if (text.length > 0) yield { key: c.osisID, text };
  }
}
