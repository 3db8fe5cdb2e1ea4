/**
 * A reader for dictd databases (Debian's dict-jargon, dict-foldoc, dict-devil, ...): `NAME.index` lines
 * "headword TAB offset TAB length" (offsets in dictd's base64 digits) into `NAME.dict.dz` (dictzip, which is
 * gzip) or `NAME.dict`. Entries in the order of the dictionary file, in documents of `group` entries.
 * Written by hand: the format is three columns and a gzip stream; no npm package reads it offline.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { RetroError } from "../util/errors.ts";
import type { Document } from "./document.ts";

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** dictd's base64 number: most significant digit first. */
export function dictdNumber(s: string): number {
  let n = 0;
  for (const c of s) {
    const d = B64.indexOf(c);
    if (d < 0) throw new Error(`"${s}" is not a dictd base64 number`);
    n = n * 64 + d;
  }
  return n;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export async function* dictdDocs(base: string, group = 25, installHint?: string): AsyncGenerator<Document> {
  const indexFile = `${base}.index`;
  const dictFile = fs.existsSync(`${base}.dict.dz`) ? `${base}.dict.dz` : `${base}.dict`;
  if (!fs.existsSync(indexFile) || !fs.existsSync(dictFile)) {
    throw new RetroError(
      "notFound",
      `dictd database ${base}: ${indexFile} or ${base}.dict[.dz] not ` +
        `found${installHint ? ` (install it: ${installHint})` : ""}`,
    );
  }
  let dict: Buffer;
  try {
    dict = dictFile.endsWith(".dz") ? zlib.gunzipSync(fs.readFileSync(dictFile)) : fs.readFileSync(dictFile);
  } catch (e) {
    throw new RetroError("corrupt", `${dictFile}: does not decompress (${(e as Error).message})`);
  }
  const entries = new Map<number, { head: string; len: number }>();
  fs.readFileSync(indexFile, "utf8")
    .split("\n")
    .forEach((line, i) => {
      if (line.trim() === "") return;
      const f = line.split("\t");
      let off: number, len: number;
      try {
        if (f.length < 3) throw new Error("expected 3 tab-separated columns");
        off = dictdNumber(f[1]);
        len = dictdNumber(f[2]);
      } catch (e) {
        throw new RetroError("corrupt", `${indexFile}:${i + 1}: ${(e as Error).message}`);
      }
      if (off + len > dict.length)
        throw new RetroError(
          "corrupt",
          `${indexFile}:${i + 1}: entry ends at byte ${off + len}, the dictionary has ${dict.length}`,
        );
      if (f[0].startsWith("00-database-") || f[0].startsWith("00database")) return; // the dictionary's own metadata
      if (!entries.has(off)) entries.set(off, { head: f[0], len }); // several headwords may share one entry
    });
  const sorted = [...entries.entries()].sort((a, b) => a[0] - b[0]);
  for (let i = 0; i < sorted.length; i += group) {
    const texts: string[] = [];
    for (const [off, e] of sorted.slice(i, i + group)) {
      let t: string;
      try {
        t = utf8.decode(dict.subarray(off, off + e.len));
      } catch {
        throw new RetroError("badInput", `${dictFile}: entry "${e.head}" is not valid UTF-8`);
      }
      texts.push(
        t
          .split("\n")
          .map((l) => l.trim())
          .filter(Boolean)
          .join("\n"),
      );
    }
    yield { key: `${path.basename(base)}:${sorted[i][1].head}`, text: texts.join("\n\n") };
  }
}
